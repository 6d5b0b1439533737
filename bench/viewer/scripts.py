"""In-page instrumentation of the viewer benchmark (JavaScript run by Playwright)."""

# Runs before the page's scripts: records when readingApp.ready turns true (and at which position), submit
# clicks, save-status changes, and key events / renders for the scroll measurement.
INIT_SCRIPT = r"""
(() => {
  performance.setResourceTimingBufferSize(100000);  // the default 250 entries fill up after a few cases
  const bench = { marks: [], clicks: [], saves: [] };
  window.__bench = bench;
  let app;
  Object.defineProperty(window, 'readingApp', {
    configurable: true,
    get() { return app; },
    set(v) {
      app = v;
      let ready = v.ready;
      Object.defineProperty(v, 'ready', {
        configurable: true,
        enumerable: true,
        get() { return ready; },
        set(x) {
          ready = x;
          if (x) bench.marks.push({ t: performance.now(), position: v.position, itemId: v.itemId });
        },
      });
    },
  });
  document.addEventListener('click', (e) => {
    const t = performance.now();
    if (e.target instanceof Element && e.target.closest('[data-testid="submit-read"]')) bench.clicks.push(t);
  }, true);
  new MutationObserver((records) => {
    const t = performance.now();
    for (const r of records) {
      const d = r.target.dataset;
      if (d && d.testid === 'save-status') bench.saves.push({ t, state: d.state });
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });

  // Scroll: arm(target) before a key press; the promise resolves on the first IMAGE_RENDERED of the first
  // viewport element with it on `target`, with the in-page time since the key event arrived. The page's own
  // IMAGE_RENDERED handler (registered first) has drawn the DL overlay and the marker by then.
  const RENDERED = 'CORNERSTONE_IMAGE_RENDERED';
  bench.arm = (target) => {
    const el = document.querySelector('[data-testid="viewport"]');
    let t0 = null;
    let events = 0;
    const onKey = () => { if (t0 === null) t0 = performance.now(); };
    document.addEventListener('keydown', onKey, true);
    bench.pending = new Promise((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`slice ${target} not rendered in 5 s`)); }, 5000);
      function cleanup() {
        clearTimeout(timer);
        el.removeEventListener(RENDERED, onRender);
        document.removeEventListener('keydown', onKey, true);
      }
      function onRender() {
        events += 1;
        if (window.readingApp.viewerState().slice_index !== target || t0 === null) return;
        const t1 = performance.now();
        cleanup();
        resolve({ ms: t1 - t0, events });
      }
      el.addEventListener(RENDERED, onRender);
    });
    return true;
  };
})();
"""


FACTS_JS = r"""
() => {
  const facts = { userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency,
                  devicePixelRatio: window.devicePixelRatio };
  for (const kind of ['webgl2', 'webgl']) {
    const gl = document.createElement('canvas').getContext(kind);
    if (!gl) continue;
    const ext = gl.getExtension('WEBGL_debug_renderer_info');
    facts.webgl = kind;
    facts.webglVendor = ext ? gl.getParameter(ext.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR);
    facts.webglRenderer = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    facts.webglVersion = gl.getParameter(gl.VERSION);
    break;
  }
  const app = window.readingApp;
  if (app) { facts.renderBackend = app.renderBackend; facts.cornerstoneRenderer = app.renderer; }
  const canvas = document.querySelector('[data-testid="viewport"] canvas');
  if (canvas) facts.viewerCanvas = [canvas.width, canvas.height];
  return facts;
}
"""


# Network facts of the current document: the bundle's and the DICOM slices' transferred bytes (0: from cache).
NETWORK_JS = r"""
(itemId) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const sum = (list, key) => list.reduce((a, e) => a + (e[key] || 0), 0);
  const bundle = res.filter((e) => e.name.includes('/static/assets/'));
  const dicom = res.filter((e) => e.name.includes(`/api/items/${itemId}/images/`));
  return {
    dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
    html_response_end_ms: nav ? nav.responseEnd : null,
    bundle_files: bundle.length, bundle_transfer_bytes: sum(bundle, 'transferSize'),
    bundle_body_bytes: sum(bundle, 'decodedBodySize'),
    dicom_files: dicom.length, dicom_transfer_bytes: sum(dicom, 'transferSize'),
    // The page's own start-up marks (session fetched, Cornerstone ready, item fetched, first images, shown).
    marks: Object.fromEntries(performance.getEntriesByType('mark').filter((m) => m.name.startsWith('reading:'))
      .map((m) => [m.name.slice(8), Math.round(m.startTime)])),
  };
}
"""
