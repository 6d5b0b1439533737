// Starts the reading page's first requests while the viewer bundle still downloads and compiles: the session,
// its current item (when the session is already in progress) and that item's first slices, which land in the
// browser's HTTP cache (the API sends them cacheable for the session). The bundle (frontend/src/session.js) takes
// window.__readingBoot over where it matches its session and falls back to its own requests on any failure.
(function () {
  'use strict';
  var root = document.getElementById('reading-app');
  if (!root || !window.fetch || !window.Promise) return;
  var sessionId = root.dataset.sessionId;
  var base = root.dataset.apiBase || '/api/';
  function get(path) {
    return fetch(base + path, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (resp) {
        if (!resp.ok) throw new Error('HTTP ' + resp.status);
        return resp.status === 204 ? { status: 204, data: null } : resp.json().then(function (data) {
          return { status: resp.status, data: data };
        });
      });
  }
  var session = get('sessions/' + sessionId + '/');
  var next = session.then(function (r) {
    if (!r.data || r.data.state !== 'in_progress') return null; // an unstarted session is started by the page
    return get('sessions/' + sessionId + '/next/');
  });
  // Warm the HTTP cache with the slice each series opens on (the lesion's slice of the primary series).
  next.then(function (r) {
    var item = r && r.data;
    if (!item || !item.images) return;
    var lesion = item.lesion && typeof item.lesion.slice_index === 'number' ? item.lesion.slice_index : null;
    var series = item.series && item.series.length ? item.series : [{ primary: true, images: item.images }];
    series.forEach(function (s) {
      var k = s.primary && lesion !== null ? lesion : Math.floor(s.images.length / 2);
      if (s.images[k]) fetch(s.images[k], { credentials: 'same-origin' }).catch(function () {});
    });
  }).catch(function () {});
  session.catch(function () {});
  next.catch(function () {});
  window.__readingBoot = { sessionId: sessionId, session: session, next: next };
})();
