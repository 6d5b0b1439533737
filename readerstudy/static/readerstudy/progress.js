// Live progress: polls the study's progress.json and updates the table in place (no full-page refresh).
(function () {
  "use strict";
  const table = document.querySelector("[data-testid=progress-table]");
  if (!table) return;
  const url = table.dataset.source;
  const every = Number(table.dataset.pollSeconds || 15) * 1000;

  function setText(root, selector, text) {
    const el = root.querySelector(selector);
    if (el) el.textContent = text;
  }

  function render(data) {
    setText(document, "[data-testid=study-percent]", data.percent + " %");
    setText(document, "[data-testid=study-reads]", data.reads + " of " + data.total);
    setText(document, "[data-testid=projected-finish]", data.projected_finish_text);
    setText(document, "[data-testid=projection]", data.projection);
    for (const r of data.readers) {
      const row = table.querySelector("tr[data-reader=\"" + CSS.escape(r.reader) + "\"]");
      if (!row) continue;
      row.dataset.read = r.reads;
      row.dataset.total = r.total;
      setText(row, ".session", r.current_session === null ? "done" : r.current_session + " of " + r.sessions);
      setText(row, ".reads", r.reads + " / " + r.total);
      setText(row, ".median", r.median_active_seconds === null ? "—" : r.median_active_seconds + " s");
      setText(row, ".last", r.last_activity_text);
      setText(row, ".next", r.next_session);
    }
    const stamp = document.querySelector("[data-testid=progress-updated]");
    if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) render(await response.json());
    } catch (e) {
      // offline for a moment: the next poll tries again
    }
    window.setTimeout(poll, every);
  }
  window.setTimeout(poll, every);
})();
