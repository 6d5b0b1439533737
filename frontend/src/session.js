// The reading page's session loop: start, blocked states, the current item, submit with retries, complete.
// The viewer side (grid, overlay, tools, keys' viewer commands) lives in workstation.js.

import { ApiError, NetworkError, makeApi } from './api.js';
import { formatDate, h, isTextEntry, sleep } from './dom.js';
import { keyCommand } from './keys.js';
import { RatingPanel } from './rating.js';
import { refusalText, submitWithRetry } from './submit.js';
import { ActiveTimer, safeStore } from './timer.js';
import { initCornerstone } from './viewer.js';
import { Workstation } from './workstation.js';

const SAVED_PAUSE_MS = 600; // "Saved" stays visible this long before the screen goes blank for the next case

export class ReadingApp {
  constructor(root) {
    this.root = root;
    this.sessionId = root.dataset.sessionId;
    this.worklistUrl = root.dataset.worklistUrl || '/reading/';
    const csrfInput = root.querySelector('input[name="csrfmiddlewaretoken"]');
    this.api = makeApi(root.dataset.apiBase || '/api/', csrfInput ? csrfInput.value : '');
    this.store = safeStore(window.sessionStorage);
    this.session = null;
    this.item = null;
    this.timer = null;
    this.submitting = false;
    this.itemToken = 0;
    this.lastSaved = false;
    this.hooks = {
      itemId: null,
      position: null,
      ready: false,
      overlayVisible: false,
      sliceIndex: null,
      state: 'starting',
      rating: null,
      renderBackend: null,
      mpr: false,
      mprRendered: () => this.ws?.mpr.rendered ?? 0,
      cine: false,
      viewerState: () => this.ws?.viewerState() ?? null,
      activeSeconds: () => (this.timer ? this.timer.seconds() : null),
      cacheBytes: () => null,
      measurements: () => this.ws?.measurements() ?? [],
      viewports: () => this.ws?.viewportsInfo() ?? [],
      lesionOnCanvas: () => this.ws?.grid.primaryCell()?.lesionOnCanvas() ?? null,
      scroll: (role, delta) => this.ws?.grid.cells.find((c) => c.role === role)?.scrollBy(delta),
    };
    window.readingApp = this.hooks;
  }

  // --- boot ----------------------------------------------------------------------------------------------------

  async start() {
    this.root.querySelectorAll(':scope > noscript').forEach((n) => n.remove());
    this.root.classList.add('ra-root');
    // Cornerstone's start-up (web workers) runs while the session and its current item are fetched.
    const capsPromise = initCornerstone();
    capsPromise.catch(() => {}); // awaited below
    try {
      const boot = takeBoot(this.sessionId);
      let { data: session } = (boot && (await boot.session.catch(() => null))) || (await this.api.session(this.sessionId));
      if (session.state === 'open') ({ data: session } = await this.api.startSession(this.sessionId));
      this.session = session;
      mark('session');
      const blocked = this.blockedMessage(session);
      if (blocked) return this.showMessage(blocked.title, blocked.text, `session-${session.state}`);
      // The item the boot script asked for (an in-progress session), else a request now.
      const early = boot && session.state === 'in_progress' ? await boot.next.catch(() => null) : null;
      const first = early ? Promise.resolve(early) : this.api.nextItem(this.sessionId);
      first.catch(() => {}); // awaited in loadNext
      const caps = await capsPromise;
      mark('cornerstone');
      this.hooks.renderBackend = caps.cpu ? 'cpu' : 'gpu';
      this.hooks.renderer = caps.renderer;
      this.buildLayout(caps);
      if (caps.cpu) this.warn('No WebGL in this browser: images are drawn in software (slower).');
      document.addEventListener('keydown', (e) => this.onKey(e));
      this.guardLogout();
      await this.loadNext(first);
    } catch (err) {
      this.fail(err);
    }
  }

  tz() {
    return (this.session && this.session.time_zone) || 'UTC';
  }

  nextSessionText(session) {
    const next = session && session.next_session;
    if (!next) return 'This was your last session of this study.';
    const when = formatDate(next.available_from, this.tz());
    return when ? `Your next session (${next.index}) opens on ${when}.` : `Your next session (${next.index}) opens after the washout.`;
  }

  blockedMessage(session) {
    switch (session.state) {
      case 'locked': {
        const when = formatDate(session.available_from, this.tz());
        const washout = session.washout_days ? ` (washout of ${session.washout_days} days)` : '';
        return { title: 'Session not available yet', text: when ? `This session opens on ${when}${washout}.` : 'This session is not open yet.' };
      }
      case 'closed':
        return { title: 'Study closed', text: 'This study is closed: no more reads can be submitted.' };
      case 'finished':
        return { title: 'Session finished', text: `You have finished this session. ${this.nextSessionText(session)}` };
      default:
        return null;
    }
  }

  showMessage(title, text, kind = 'message') {
    this.hooks.state = kind;
    this.hooks.ready = false;
    this.ws?.stop();
    this.root.replaceChildren(
      h(
        'div',
        { class: 'ra-message card', dataset: { testid: 'reading-message', state: kind } },
        h('h2', { text: title }),
        text ? h('p', { text }) : null,
        h('p', {}, h('a', { href: this.worklistUrl, class: 'button', dataset: { testid: 'back-to-worklist' } }, 'Back to the worklist')),
      ),
    );
  }

  fail(err) {
    console.error(err);
    let text;
    if (err instanceof ApiError) text = [err.detail, ...err.errors].join(' ');
    else if (err instanceof NetworkError) text = 'The server cannot be reached. Check the connection and reload the page.';
    else text = (err && err.message) || String(err);
    this.showMessage('Something went wrong', text, 'error');
  }

  warn(text) {
    this.warningEl.textContent = text;
    this.warningEl.hidden = false;
  }

  /** Logging out mid-case loses the unsaved rating: ask first. */
  guardLogout() {
    document.querySelectorAll('form[action*="logout"]').forEach((form) => {
      form.addEventListener('submit', (e) => {
        if (this.hooks.state !== 'reading' && this.hooks.state !== 'saving') return;
        const text = 'You are in the middle of a case: your rating of it is not saved. Log out anyway?';
        if (!window.confirm(text)) e.preventDefault();
      });
    });
  }

  // --- layout --------------------------------------------------------------------------------------------------

  buildLayout(caps) {
    const s = this.session;
    this.ws = new Workstation(caps, this.hooks, { onFocusRating: () => this.rating.focus() });
    this.progressEl = h('span', { dataset: { testid: 'progress' } }, `${s.n_read} of ${s.n_items}`);
    this.practiceEl = s.practice
      ? h('div', { class: 'ra-practice', dataset: { testid: 'practice-banner' } }, 'Practice session: not part of the study; the truth is shown after each rating.')
      : null;
    this.caseEl = h('span', { class: 'ra-case' });
    this.modalityEl = h('span', { class: 'ra-modality', dataset: { testid: 'modality' } });
    const header = h(
      'div',
      { class: 'ra-head' },
      h('div', { class: 'ra-study' }, s.study, s.practice ? ' · practice' : ` · session ${s.index}${s.n_sessions ? ` of ${s.n_sessions}` : ''}`),
      this.practiceEl,
      h('div', { class: 'ra-progress' }, 'Read ', this.progressEl, this.caseEl, ' · ', this.modalityEl),
    );
    this.warningEl = h('div', { class: 'ra-warning', hidden: true, role: 'alert' });
    this.errorEl = h('div', { class: 'ra-error', hidden: true, role: 'alert', dataset: { testid: 'item-error' } });
    this.rating = new RatingPanel({ onSubmit: () => this.submit(), onChange: () => (this.hooks.rating = this.rating.rating) });
    const ws = this.ws;
    const side = h('aside', { class: 'ra-side' }, ws.banner, header, this.warningEl, this.errorEl, ws.clinical.el, ws.dl.el, this.rating.el, ws.tools.el, ws.presetPanel, ws.help);
    this.root.append(h('div', { class: 'ra-layout' }, ws.viewerWrap, side));
  }

  // --- item loop -----------------------------------------------------------------------------------------------

  async loadNext(requested = null) {
    const token = ++this.itemToken;
    this.blank('Loading the next case…');
    let response;
    try {
      response = await (requested || this.api.nextItem(this.sessionId));
    } catch (err) {
      if (err instanceof ApiError) this.showMessage('Cannot continue this session', [err.detail, ...err.errors].join(' '), 'blocked');
      else this.fail(err);
      return;
    }
    if (token !== this.itemToken) return;
    mark('item');
    if (response.status === 204 || !response.data) return this.complete();
    await this.showItem(response.data, token);
  }

  async complete() {
    let session = this.session;
    try {
      ({ data: session } = await this.api.session(this.sessionId));
    } catch {
      // the message without the next session's date
    }
    const n = session ? session.n_items : null;
    const done = n ? `All ${n} cases of this session are read. Thank you.` : 'Thank you.';
    this.showMessage('Session complete', `${done} ${this.nextSessionText(session)}`, 'complete');
  }

  /** Hide the image and lock the rating while the next case loads. */
  blank(text) {
    this.hooks.ready = false;
    this.ws.blank(text);
    this.rating.setEnabled(false);
  }

  resetForItem(item) {
    this.item = item;
    this.timer?.dispose();
    this.timer = new ActiveTimer({ key: `ra-active:${this.sessionId}:${item.id}`, store: this.store });
    this.idempotencyKey = newKey();
    this.submitting = false;
    Object.assign(this.hooks, { itemId: item.id, position: item.position, ready: false, overlayVisible: false, sliceIndex: null, state: 'loading', rating: null, mpr: false, cine: false });
    this.rating.reset(item, this.lastSaved);
    this.lastSaved = false;
    this.progressEl.textContent = `${item.n_read} of ${item.n_items}`;
    this.caseEl.textContent = ` · case ${item.position + 1}`;
    this.modalityEl.textContent = (item.modality && item.modality.label) || '';
    this.errorEl.hidden = true;
    this.ws.reset(item);
  }

  async showItem(item, token) {
    this.resetForItem(item);
    const isCurrent = () => token === this.itemToken;
    const shown = await this.ws.show(item, isCurrent, () => this.loadNext());
    if (!shown) return;
    mark('shown');
    // Displayed: lift the curtain, start the clock, enable rating, prefetch the next case.
    this.ws.reveal();
    this.timer.start();
    this.rating.setEnabled(true);
    this.rating.showStatus();
    Object.assign(this.hooks, { state: 'reading', ready: true, overlayVisible: !!this.ws.overlay && this.ws.overlay.visible });
    this.ws.prefetchNext(item, isCurrent);
  }

  showItemError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = false;
  }

  // --- viewer chrome -------------------------------------------------------------------------------------------








  // --- keys ----------------------------------------------------------------------------------------------------

  /** Capture phase on the viewer: Tab leaves it (Cornerstone must not see it), Enter moves to the rating. */

  onKey(e) {
    if (!this.hooks.ready) return;
    const target = e.target;
    const cmd = keyCommand(e, {
      textEntry: isTextEntry(target),
      onRange: target instanceof HTMLInputElement && target.type === 'range',
      inViewer: target instanceof Element && !!target.closest('.ra-viewer-wrap'),
      presetKeys: (this.item.window_presets || []).map((p) => String(p.key)),
    });
    if (!cmd) return;
    e.preventDefault();
    this.ws.run(cmd);
  }



  // --- submit --------------------------------------------------------------------------------------------------

  async submit() {
    if (this.submitting || !this.rating.ready() || !this.item || !this.hooks.ready) return;
    this.submitting = true;
    const item = this.item;
    const token = this.itemToken;
    // Frozen at the first attempt: retries send the identical body with the same key.
    const payload = {
      ...this.rating.answer(),
      idempotency_key: this.idempotencyKey,
      active_seconds: Math.round(this.timer.stop() * 1000) / 1000,
      viewer_state: this.ws.viewerState(),
    };
    this.rating.setEnabled(false);
    this.hooks.state = 'saving';
    const result = await submitWithRetry({
      send: () => this.api.submitRead(item.id, payload),
      sleep,
      isCurrent: () => token === this.itemToken,
      onState: (state, info) => {
        if (state === 'pending') this.rating.setSave('Saving…', 'pending');
        else this.rating.setSave(`Not saved – retrying in ${Math.round(info.delayMs / 1000)} s (attempt ${info.attempt})`, 'retry');
      },
    });
    if (result.stale) return;
    if (result.ok) {
      this.timer.forget();
      this.rating.setSave(result.status === 201 ? 'Saved' : 'Saved (already stored)', 'ok');
      this.hooks.state = 'saved';
      this.lastSaved = true;
      this.progressEl.textContent = `${Math.min(item.n_read + 1, item.n_items)} of ${item.n_items}`;
      const feedback = result.data && result.data.practice_feedback;
      if (feedback) {
        // Practice only: the truth, shown until the reader moves on (real reads never carry it).
        this.hooks.state = 'feedback';
        await this.rating.showFeedback(feedback, payload);
      } else {
        await sleep(SAVED_PAUSE_MS);
      }
      if (token !== this.itemToken) return;
      this.submitting = false;
      await this.loadNext();
      return;
    }
    const err = result.error;
    this.submitting = false;
    this.hooks.state = 'reading';
    this.rating.setSave(`Not saved: ${refusalText(err)}`, 'error');
    if (err.status === 400) {
      // The reader can correct the answer and submit again (same key, same case).
      this.timer.restart();
      this.rating.setEnabled(true);
    } else {
      // 409 and the like: the server refuses this read; the page shows why and offers a reload.
      this.rating.saveStatus.append(' ', h('button', { type: 'button', onclick: () => window.location.reload() }, 'Reload'));
    }
  }
}

/** The requests readerstudy/static/readerstudy/reading-boot.js started before the bundle ran, once. */
function takeBoot(sessionId) {
  const boot = window.__readingBoot;
  window.__readingBoot = null;
  return boot && String(boot.sessionId) === String(sessionId) ? boot : null;
}

/** Performance marks of the page's start-up steps (read by bench.viewer: where the first image's time goes). */
function mark(name) {
  performance.mark?.(`reading:${name}`);
}

function newKey() {
  if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
  // randomUUID needs a secure context (https or localhost); fall back to getRandomValues.
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
