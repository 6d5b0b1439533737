// The import run page: polls the run's JSON until it has finished and updates status, progress, counts and errors
// in place (no page reload). Plain JS, no build step; the URL comes from data-status-url.
(function () {
  "use strict";
  const INTERVAL_MS = 1000;

  function text(el, value) {
    if (el) el.textContent = value;
  }

  function render(root, state) {
    const status = root.querySelector("[data-testid=import-status]");
    status.dataset.status = state.status;
    text(status, state.status);
    text(root.querySelector("[data-role=message]"), state.message || "");
    const bar = root.querySelector("[data-testid=import-progress]");
    bar.value = state.progress;
    text(
      root.querySelector("[data-role=counts]"),
      state.series_total ? `${state.series_done} of ${state.series_total} series` : "",
    );
    const summary = root.querySelector("[data-testid=import-summary]");
    if (state.summary) {
      text(summary.querySelector("[data-role=cases]"), String(state.summary.cases));
      text(summary.querySelector("[data-role=patients]"), String(state.summary.patients));
      text(summary.querySelector("[data-role=series]"), String(state.summary.series));
      summary.hidden = false;
    }
    const block = root.querySelector("[data-role=errors-block]");
    const list = root.querySelector("[data-testid=import-errors]");
    if (state.errors.length !== list.children.length) {
      list.replaceChildren(
        ...state.errors.map((e) => {
          const li = document.createElement("li");
          li.dataset.row = e.row === null ? "" : String(e.row);
          li.dataset.column = e.column || "";
          let where = e.file || "";
          if (e.row !== null) where += ` row ${e.row}`;
          if (e.column) where += ` column ${e.column}`;
          li.textContent = `${where}: ${e.reason}`; // text, never HTML: the reasons quote user values
          return li;
        }),
      );
    }
    block.hidden = state.errors.length === 0;
  }

  async function poll(root) {
    const url = root.dataset.statusUrl;
    for (;;) {
      let state;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok) return;
        state = await response.json();
      } catch (err) {
        await new Promise((r) => setTimeout(r, INTERVAL_MS * 3));
        continue;
      }
      render(root, state);
      if (state.finished) return;
      await new Promise((r) => setTimeout(r, INTERVAL_MS));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-testid=import-run]");
    if (root && root.querySelector("[data-testid=import-status]").dataset.status !== "succeeded"
        && root.querySelector("[data-testid=import-status]").dataset.status !== "failed") {
      poll(root);
    }
  });
})();
