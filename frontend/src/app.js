// The reading page: session state, item loop, viewer panel, DL panel, rating form and submit with retries.

import { makeApi, fetchBytes, ApiError, NetworkError } from './api.js';
import { ActiveTimer } from './timer.js';
import { StackViewer, initCornerstone, toImageId } from './viewer.js';

const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const SAVED_PAUSE_MS = 600; // "Saved" stays visible this long before the screen goes blank for the next case

/** Tiny DOM builder: h('div', {class: 'x', dataset: {testid: 'y'}}, child, 'text'). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isTextEntry(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    return !['range', 'checkbox', 'radio', 'button', 'submit', 'reset'].includes(target.type);
  }
  return false;
}

function formatDate(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

export class ReadingApp {
  constructor(root) {
    this.root = root;
    this.sessionId = root.dataset.sessionId;
    this.worklistUrl = root.dataset.worklistUrl || '/reading/';
    const csrfInput = root.querySelector('input[name="csrfmiddlewaretoken"]');
    this.csrfToken = csrfInput ? csrfInput.value : '';
    this.api = makeApi(root.dataset.apiBase || '/api/', this.csrfToken);
    this.session = null;
    this.item = null;
    this.viewer = null;
    this.timer = null;
    this.rating = null; // the reader's value, null until set
    this.preset = null;
    this.submitting = false;
    this.itemToken = 0;
    // Test hooks and a read-only view of the state.
    this.hooks = {
      itemId: null,
      position: null,
      ready: false,
      overlayVisible: false,
      sliceIndex: null,
      state: 'starting',
      rating: null,
      renderBackend: null,
      viewerState: () => this.viewerState(),
      activeSeconds: () => (this.timer ? this.timer.seconds() : null),
      cacheBytes: () => (this.viewer ? this.viewer.cacheBytes() : null),
    };
    window.readingApp = this.hooks;
  }

  // --- boot ----------------------------------------------------------------------------------------------------

  async start() {
    this.root.querySelectorAll(':scope > noscript').forEach((n) => n.remove());
    this.root.classList.add('ra-root');
    try {
      let { data: session } = await this.api.session(this.sessionId);
      if (session.state === 'open') {
        ({ data: session } = await this.api.startSession(this.sessionId));
      }
      this.session = session;
      const blocked = this.blockedMessage(session);
      if (blocked) {
        this.showMessage(blocked.title, blocked.text, 'session-' + session.state);
        return;
      }
      this.buildLayout();
      const caps = await initCornerstone();
      this.hooks.renderBackend = caps.cpu ? 'cpu' : 'gpu';
      this.hooks.renderer = caps.renderer;
      if (caps.cpu) {
        this.warn('No WebGL in this browser: images are drawn in software and the DL overlay cannot be shown.');
      }
      await this.viewer.setup();
      document.addEventListener('keydown', (e) => this.onKey(e));
      await this.loadNext();
    } catch (err) {
      this.fail(err);
    }
  }

  blockedMessage(session) {
    switch (session.state) {
      case 'locked': {
        const when = formatDate(session.available_from);
        return {
          title: 'Session not available yet',
          text: when
            ? `This session opens on ${when}${session.washout_days ? ` (washout of ${session.washout_days} days)` : ''}.`
            : 'This session is not open yet.',
        };
      }
      case 'closed':
        return { title: 'Study closed', text: 'This study is closed: no more reads can be submitted.' };
      case 'finished':
        return { title: 'Session finished', text: 'You have finished this session. Thank you.' };
      default:
        return null;
    }
  }

  showMessage(title, text, kind = 'message') {
    this.hooks.state = kind;
    this.hooks.ready = false;
    this.viewer?.cancelPrefetch();
    this.root.replaceChildren(
      h(
        'div',
        { class: 'ra-message card', dataset: { testid: 'reading-message', state: kind } },
        h('h2', { text: title }),
        text ? h('p', { text }) : null,
        h('p', {}, h('a', { href: this.worklistUrl, class: 'button', dataset: { testid: 'back-to-worklist' } }, 'Back to the worklist')),
      ),
    );
    if (this.viewer) this.viewer = null;
  }

  fail(err) {
    console.error(err);
    let text;
    if (err instanceof ApiError) {
      text = [err.detail, ...err.errors].join(' ');
    } else if (err instanceof NetworkError) {
      text = 'The server cannot be reached. Check the connection and reload the page.';
    } else {
      text = (err && err.message) || String(err);
    }
    this.showMessage('Something went wrong', text, 'error');
  }

  warn(text) {
    this.warningEl.textContent = text;
    this.warningEl.hidden = false;
  }

  // --- layout --------------------------------------------------------------------------------------------------

  buildLayout() {
    const s = this.session;
    this.viewerEl = h('div', { class: 'ra-viewport', dataset: { testid: 'viewer' }, tabindex: '-1' });
    this.sliceEl = h('div', { class: 'ra-corner ra-tl', dataset: { testid: 'slice-indicator' } });
    this.wlEl = h('div', { class: 'ra-corner ra-bl', dataset: { testid: 'window-level' } });
    this.presetEl = h('div', { class: 'ra-corner ra-br' });
    this.curtainText = h('div', { class: 'ra-curtain-text', dataset: { testid: 'loading' } }, 'Loading…');
    this.curtain = h('div', { class: 'ra-curtain' }, this.curtainText);
    this.viewerWrap = h(
      'div',
      { class: 'ra-viewer-wrap blank' },
      this.viewerEl,
      this.sliceEl,
      this.wlEl,
      this.presetEl,
      this.curtain,
    );

    this.progressEl = h('span', { dataset: { testid: 'progress' } }, `${s.n_read} of ${s.n_items}`);
    this.caseEl = h('span', { class: 'ra-case' });
    this.modalityEl = h('span', { class: 'ra-modality', dataset: { testid: 'modality' } });
    const header = h(
      'div',
      { class: 'ra-head' },
      h('div', { class: 'ra-study' }, s.study, ` · session ${s.index}${s.n_sessions ? ` of ${s.n_sessions}` : ''}`),
      h('div', { class: 'ra-progress' }, 'Read ', this.progressEl, this.caseEl),
      this.modalityEl,
    );

    this.dlPanel = h('section', { class: 'ra-panel ra-dl', hidden: true });
    this.presetPanel = h('section', { class: 'ra-panel ra-presets' });

    // Rating form
    this.slider = h('input', {
      type: 'range',
      class: 'ra-slider unset',
      dataset: { testid: 'rating-slider' },
      'aria-label': 'Rating',
      disabled: true,
    });
    this.valueEl = h('output', { class: 'ra-value', dataset: { testid: 'rating-value' } }, '–');
    this.numberInput = h('input', {
      type: 'number',
      class: 'ra-number',
      dataset: { testid: 'rating-number' },
      'aria-label': 'Rating (type a number)',
      inputmode: 'numeric',
      step: '1',
      placeholder: '–',
      disabled: true,
    });
    this.submitBtn = h('button', { type: 'submit', class: 'ra-submit', dataset: { testid: 'submit-read' }, disabled: true }, 'Submit rating');
    this.saveStatus = h('div', { class: 'ra-save', dataset: { testid: 'save-status' }, role: 'status', 'aria-live': 'polite' });
    this.legendLow = h('span', { class: 'ra-legend-low' });
    this.legendHigh = h('span', { class: 'ra-legend-high' });
    this.form = h(
      'form',
      { class: 'ra-panel ra-rating', novalidate: true },
      h('h3', { text: 'Your rating' }),
      h('p', { class: 'ra-question' }, 'How likely is the marked lesion a metastasis?'),
      h('div', { class: 'ra-slider-row' }, this.slider),
      h('div', { class: 'ra-legend' }, this.legendLow, this.legendHigh),
      h('div', { class: 'ra-value-row' }, h('span', {}, 'Rating: '), this.valueEl, h('label', { class: 'ra-number-label' }, 'or type ', this.numberInput)),
      this.submitBtn,
      this.saveStatus,
    );
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    this.slider.addEventListener('input', () => this.setRating(Number(this.slider.value), 'slider'));
    this.slider.addEventListener('change', () => this.setRating(Number(this.slider.value), 'slider'));
    // A click on the thumb's resting place fires no input event: count the release as setting the value.
    this.slider.addEventListener('pointerup', () => this.setRating(Number(this.slider.value), 'slider'));
    this.slider.addEventListener('keyup', (e) => {
      if (['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End', 'PageUp', 'PageDown'].includes(e.key)) {
        this.setRating(Number(this.slider.value), 'slider');
      }
    });
    this.numberInput.addEventListener('input', () => this.onNumberInput());
    this.numberInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        if (!this.submitBtn.disabled) this.submit();
      }
    });

    this.warningEl = h('div', { class: 'ra-warning', hidden: true, role: 'alert' });
    this.errorEl = h('div', { class: 'ra-error', hidden: true, role: 'alert', dataset: { testid: 'item-error' } });

    const help = h(
      'details',
      { class: 'ra-panel ra-help' },
      h('summary', {}, 'Mouse and keys'),
      h(
        'ul',
        {},
        h('li', {}, 'Wheel, ↑/↓: slices · Home/End: first/last'),
        h('li', {}, 'Left drag: window/level · right drag: zoom'),
        h('li', {}, 'Middle drag or Shift + left drag: pan'),
        h('li', {}, '1–5: window presets · f: fit · r: reset'),
        h('li', {}, 'j: jump to the lesion · m: marker on/off'),
      ),
    );
    this.helpList = help.querySelector('ul');
    this.helpDl = null; // the overlay key's line exists only for items with an overlay

    const side = h('aside', { class: 'ra-side' }, header, this.warningEl, this.errorEl, this.dlPanel, this.presetPanel, this.form, help);
    this.root.append(h('div', { class: 'ra-layout' }, this.viewerWrap, side));

    this.viewer = new StackViewer(this.viewerEl, this.viewerWrap, {
      onSlice: () => this.updateCorners(),
      onRender: () => this.updateCorners(),
      onVoi: (voi) => this.onVoi(voi),
    });
  }

  // --- item loop -----------------------------------------------------------------------------------------------

  async loadNext() {
    const token = ++this.itemToken;
    this.blank('Loading the next case…');
    let response;
    try {
      response = await this.api.nextItem(this.sessionId);
    } catch (err) {
      if (err instanceof ApiError) {
        this.showMessage('Cannot continue this session', [err.detail, ...err.errors].join(' '), 'blocked');
      } else {
        this.fail(err);
      }
      return;
    }
    if (token !== this.itemToken) return;
    if (response.status === 204 || !response.data) {
      this.complete();
      return;
    }
    await this.showItem(response.data, token);
  }

  complete() {
    const n = this.session ? this.session.n_items : null;
    this.showMessage('Session complete', n ? `All ${n} cases of this session are read. Thank you.` : 'Thank you.', 'complete');
  }

  /** Hide the image and lock the rating while the next case loads. */
  blank(text) {
    this.hooks.ready = false;
    this.viewerWrap.classList.add('blank');
    this.curtainText.textContent = text;
    this.setRatingEnabled(false);
  }

  async showItem(item, token) {
    this.item = item;
    this.viewer.cancelPrefetch();
    this.viewer.removeOverlay();
    this.timer?.dispose();
    this.timer = new ActiveTimer();
    this.idempotencyKey = newKey();
    this.frozen = null;
    this.submitting = false;
    this.preset = null;
    Object.assign(this.hooks, {
      itemId: item.id,
      position: item.position,
      ready: false,
      overlayVisible: false,
      sliceIndex: null,
      state: 'loading',
      rating: null,
    });
    this.resetRatingForm(item);
    this.renderItemInfo(item);
    this.errorEl.hidden = true;

    const imageIds = item.images.map(toImageId);
    const dl = item.dl || null;
    const overlayPromise = dl && dl.overlay_url ? fetchBytes(dl.overlay_url) : null;
    overlayPromise?.catch(() => {}); // handled below
    try {
      await this.viewer.loadAll(imageIds, (done, total) => {
        if (token === this.itemToken) this.curtainText.textContent = `Loading images ${done} / ${total}`;
      });
    } catch (err) {
      if (token !== this.itemToken) return;
      console.error('image load failed', err);
      this.curtainText.textContent = '';
      this.curtainText.append(
        'The images of this case could not be loaded. ',
        h('button', { type: 'button', onclick: () => this.loadNext() }, 'Try again'),
      );
      return;
    }
    if (token !== this.itemToken) return;

    const presets = item.window_presets || [];
    const first = presets[0];
    await this.viewer.show(imageIds, {
      sliceIndex: item.lesion ? item.lesion.slice_index : Math.floor(imageIds.length / 2),
      voi: first ? { width: first.width, level: first.level } : null,
      lesion: item.lesion,
    });
    this.preset = first ? first.key : null;
    if (token !== this.itemToken) return;

    if (overlayPromise) {
      this.curtainText.textContent = 'Loading the DL overlay…';
      try {
        const { bytes, headers } = await overlayPromise;
        if (token !== this.itemToken) return;
        let shape = dl.overlay_shape;
        if (!Array.isArray(shape) || shape.length !== 3) {
          shape = (headers.get('X-Overlay-Shape') || '').split(',').map(Number);
        }
        this.viewer.addOverlay(item.id, bytes, shape, dl.labels, { visible: true, opacity: this.overlayOpacity() });
        this.syncOverlayControls();
      } catch (err) {
        console.error('overlay failed', err);
        this.viewer.removeOverlay();
        this.showItemError(`The DL overlay could not be shown (${err.message || err}).`);
        this.removeOverlayControls();
      }
    }
    await this.viewer.nextRender();
    if (token !== this.itemToken) return;

    // Displayed: lift the curtain, start the clock, enable rating, prefetch the next case.
    this.viewerWrap.classList.remove('blank');
    this.timer.start();
    this.setRatingEnabled(true);
    this.updateCorners();
    this.hooks.state = 'reading';
    this.hooks.ready = true;
    this.hooks.overlayVisible = this.viewer.overlayVisible;
    this.viewerEl.focus({ preventScroll: true });
    if (item.next_images && item.next_images.length) {
      this.viewer.prefetch(item.next_images.map(toImageId));
    }
  }

  renderItemInfo(item) {
    this.progressEl.textContent = `${item.n_read} of ${item.n_items}`;
    this.caseEl.textContent = ` · case ${item.position + 1}`;
    this.modalityEl.textContent = item.modality ? item.modality.label : '';

    // Window presets
    const presets = item.window_presets || [];
    this.presetPanel.replaceChildren(
      h('h3', { text: 'Window' }),
      h(
        'div',
        { class: 'ra-preset-buttons' },
        presets.map((p) =>
          h(
            'button',
            {
              type: 'button',
              class: 'ra-preset',
              dataset: { preset: p.key, testid: `preset-${p.key}` },
              title: `W ${p.width} / L ${p.level}`,
              onclick: () => this.applyPreset(p.key),
            },
            h('kbd', { text: p.key }),
            ` ${p.name}`,
          ),
        ),
      ),
    );

    // DL panel: exists only when the server sent `dl`.
    const dl = item.dl;
    this.helpDl?.remove();
    this.helpDl = null;
    if (!dl) {
      this.dlPanel.hidden = true;
      this.dlPanel.replaceChildren();
      this.overlayToggle = null;
      this.opacityInput = null;
      return;
    }
    const pct = Math.round(Number(dl.probability) * 100);
    const probability = h('div', { class: 'ra-dl-prob', dataset: { testid: 'dl-probability' } }, `DL: ${pct}% metastasis`);
    const children = [h('h3', { text: 'Deep-learning assistance' }), probability];
    this.overlayToggle = null;
    this.opacityInput = null;
    if (dl.overlay_url) {
      this.overlayToggle = h('input', { type: 'checkbox', dataset: { testid: 'overlay-toggle' }, checked: true });
      this.overlayToggle.addEventListener('change', () => this.setOverlayVisible(this.overlayToggle.checked));
      this.opacityInput = h('input', {
        type: 'range',
        min: '0',
        max: '100',
        step: '5',
        value: String(Math.round((this.savedOpacity ?? 0.5) * 100)),
        dataset: { testid: 'overlay-opacity' },
        'aria-label': 'Overlay opacity',
      });
      this.opacityInput.addEventListener('input', () => {
        this.savedOpacity = this.overlayOpacity();
        this.viewer.setOverlayOpacity(this.savedOpacity);
      });
      const labels = (dl.labels || []).map((l) =>
        h('span', { class: `ra-label ra-label-${String(l.name).toLowerCase()}` }, String(l.name)),
      );
      children.push(
        h('label', { class: 'ra-check' }, this.overlayToggle, ' Show segmentation ', h('kbd', { text: 'o' })),
        h('label', { class: 'ra-opacity' }, 'Opacity ', this.opacityInput),
        labels.length ? h('div', { class: 'ra-labels' }, labels) : null,
      );
      this.helpDl = h('li', {}, 'o: segmentation overlay on/off');
      this.helpList.append(this.helpDl);
    }
    children.push(h('div', { class: 'ra-model' }, `Model: ${dl.model}`));
    this.dlPanel.replaceChildren(...children);
    this.dlPanel.hidden = false;
  }

  removeOverlayControls() {
    this.overlayToggle?.closest('label')?.remove();
    this.opacityInput?.closest('label')?.remove();
    this.overlayToggle = null;
    this.opacityInput = null;
    this.helpDl?.remove();
    this.helpDl = null;
  }

  overlayOpacity() {
    return this.opacityInput ? Number(this.opacityInput.value) / 100 : this.savedOpacity ?? 0.5;
  }

  setOverlayVisible(visible) {
    if (!this.viewer.segmentationId) return;
    this.viewer.setOverlayVisible(visible);
    this.syncOverlayControls();
  }

  syncOverlayControls() {
    this.hooks.overlayVisible = this.viewer.overlayVisible;
    if (this.overlayToggle) this.overlayToggle.checked = this.viewer.overlayVisible;
  }

  showItemError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = false;
  }

  // --- viewer chrome -------------------------------------------------------------------------------------------

  updateCorners() {
    if (!this.viewer || !this.viewer.imageIds.length) return;
    const k = this.viewer.sliceIndex();
    const n = this.viewer.imageIds.length;
    this.hooks.sliceIndex = k;
    const lesionSlice = this.item && this.item.lesion ? this.item.lesion.slice_index : null;
    this.sliceEl.textContent = `slice ${k + 1}/${n}${k === lesionSlice ? ' · lesion' : ''}`;
    const voi = this.viewer.voi();
    if (voi) this.wlEl.textContent = `W ${Math.round(voi.width)} / L ${Math.round(voi.level)}`;
    const preset = this.currentPreset();
    this.presetEl.textContent = preset ? preset.name : '';
    this.presetPanel.querySelectorAll('.ra-preset').forEach((b) => {
      b.classList.toggle('active', !!preset && b.dataset.preset === preset.key);
    });
  }

  currentPreset() {
    if (!this.item || this.preset === null) return null;
    return (this.item.window_presets || []).find((p) => p.key === this.preset) || null;
  }

  onVoi(voi) {
    // A drag with the window/level tool leaves the preset.
    const preset = this.currentPreset();
    if (preset && voi && (Math.abs(voi.width - preset.width) > 0.5 || Math.abs(voi.level - preset.level) > 0.5)) {
      this.preset = null;
    }
    this.updateCorners();
  }

  applyPreset(key) {
    const preset = (this.item?.window_presets || []).find((p) => String(p.key) === String(key));
    if (!preset || !this.hooks.ready) return;
    this.preset = preset.key;
    this.viewer.setVoi(preset.width, preset.level);
    this.updateCorners();
  }

  viewerState() {
    if (!this.viewer || !this.viewer.viewport) return null;
    return {
      ...this.viewer.state(),
      overlay_visible: this.viewer.overlayVisible,
      overlay_opacity: this.viewer.segmentationId ? this.viewer.overlayOpacity : null,
      preset: this.preset,
    };
  }

  onKey(e) {
    if (!this.hooks.ready || e.ctrlKey || e.metaKey || e.altKey) return;
    if (isTextEntry(e.target)) return;
    const onRange = e.target instanceof HTMLInputElement && e.target.type === 'range';
    const v = this.viewer;
    let handled = true;
    switch (e.key) {
      case 'ArrowUp':
        if (onRange) return;
        v.scrollBy(-1);
        break;
      case 'ArrowDown':
        if (onRange) return;
        v.scrollBy(1);
        break;
      case 'PageUp':
        if (onRange) return;
        v.scrollBy(-5);
        break;
      case 'PageDown':
        if (onRange) return;
        v.scrollBy(5);
        break;
      case 'Home':
        if (onRange) return;
        v.scrollTo(0);
        break;
      case 'End':
        if (onRange) return;
        v.scrollTo(v.imageIds.length - 1);
        break;
      case 'f':
      case 'F':
        v.fit();
        break;
      case 'r':
      case 'R':
        v.reset();
        this.preset = (this.item.window_presets || [])[0]?.key ?? null;
        this.updateCorners();
        break;
      case 'j':
      case 'J':
        v.jumpToLesion();
        break;
      case 'm':
      case 'M':
        v.setMarkerVisible(!v.markerVisible);
        break;
      case 'o':
      case 'O':
        if (!v.segmentationId) return;
        this.setOverlayVisible(!v.overlayVisible);
        break;
      default:
        if (/^[1-9]$/.test(e.key) && (this.item.window_presets || []).some((p) => String(p.key) === e.key)) {
          this.applyPreset(e.key);
        } else {
          handled = false;
        }
    }
    if (handled) e.preventDefault();
  }

  // --- rating --------------------------------------------------------------------------------------------------

  resetRatingForm(item) {
    const scale = item.rating_scale || { min: 0, max: 100 };
    this.scale = { min: Number(scale.min ?? 0), max: Number(scale.max ?? 100) };
    this.rating = null;
    for (const input of [this.slider, this.numberInput]) {
      input.min = String(this.scale.min);
      input.max = String(this.scale.max);
      input.step = '1';
    }
    // The range input needs some value; it stays invisible ("unset") until the reader sets one.
    this.slider.value = String(Math.round((this.scale.min + this.scale.max) / 2));
    this.slider.classList.add('unset');
    this.numberInput.value = '';
    this.valueEl.textContent = '–';
    this.valueEl.classList.add('unset');
    this.legendLow.textContent = `${this.scale.min} = ${scale.low || ''}`;
    this.legendHigh.textContent = `${this.scale.max} = ${scale.high || ''}`;
    // Kept until the reader rates this case: the previous case's read is stored.
    if (this.lastSaved) this.setSave('Previous rating saved', 'ok-prev');
    else this.setSave('', 'none');
    this.lastSaved = false;
    this.slider.setAttribute('aria-valuetext', 'not set');
    this.submitBtn.disabled = true;
  }

  setRatingEnabled(enabled) {
    const on = enabled && !this.submitting;
    this.slider.disabled = !on;
    this.numberInput.disabled = !on;
    this.submitBtn.disabled = !on || this.rating === null;
  }

  setRating(value, source) {
    if (this.submitting || this.slider.disabled) return;
    if (!Number.isInteger(value) || value < this.scale.min || value > this.scale.max) return;
    this.rating = value;
    this.hooks.rating = value;
    this.slider.classList.remove('unset');
    if (source !== 'slider') this.slider.value = String(value);
    if (source !== 'number') this.numberInput.value = String(value);
    this.numberInput.classList.remove('invalid');
    this.valueEl.textContent = String(value);
    this.valueEl.classList.remove('unset');
    this.slider.removeAttribute('aria-valuetext');
    this.submitBtn.disabled = false;
    if (this.saveStatus.dataset.state === 'error' || this.saveStatus.dataset.state === 'ok-prev') {
      this.setSave('', 'none');
    }
  }

  clearRating() {
    this.rating = null;
    this.hooks.rating = null;
    this.slider.classList.add('unset');
    this.slider.setAttribute('aria-valuetext', 'not set');
    this.valueEl.textContent = '–';
    this.valueEl.classList.add('unset');
    this.submitBtn.disabled = true;
  }

  onNumberInput() {
    const raw = this.numberInput.value.trim();
    const value = Number(raw);
    if (raw !== '' && /^\d+$/.test(raw) && value >= this.scale.min && value <= this.scale.max) {
      this.setRating(value, 'number');
    } else {
      this.numberInput.classList.toggle('invalid', raw !== '');
      this.clearRating();
    }
  }

  async submit() {
    if (this.submitting || this.rating === null || !this.item || !this.hooks.ready) return;
    this.submitting = true;
    const item = this.item;
    const token = this.itemToken;
    // Frozen at the first attempt: retries send the identical body with the same key.
    const payload = {
      rating: this.rating,
      idempotency_key: this.idempotencyKey,
      active_seconds: Math.round(this.timer.stop() * 1000) / 1000,
      viewer_state: this.viewerState(),
    };
    this.setRatingEnabled(false);
    this.setSave('Saving…', 'pending');
    for (let attempt = 0; ; attempt += 1) {
      try {
        const { status } = await this.api.submitRead(item.id, payload);
        if (token !== this.itemToken) return;
        this.setSave(status === 201 ? 'Saved' : 'Saved (already stored)', 'ok');
        this.hooks.state = 'saved';
        this.lastSaved = true;
        this.progressEl.textContent = `${Math.min(item.n_read + 1, item.n_items)} of ${item.n_items}`;
        await sleep(SAVED_PAUSE_MS);
        if (token !== this.itemToken) return;
        this.submitting = false;
        await this.loadNext();
        return;
      } catch (err) {
        if (token !== this.itemToken) return;
        const retryable = err instanceof NetworkError || (err instanceof ApiError && err.status >= 500);
        if (!retryable) {
          this.submitting = false;
          const text = [err.detail || err.message, ...(err.errors || [])].join(' ');
          this.setSave(`Not saved: ${text}`, 'error');
          if (err.status === 400) {
            // The reader can correct the value and submit again (same key, same case).
            this.timer.restart();
            this.setRatingEnabled(true);
          } else {
            // 409 and the like: the server refuses this read; the page shows why and offers a reload.
            this.saveStatus.append(' ', h('button', { type: 'button', onclick: () => window.location.reload() }, 'Reload'));
          }
          return;
        }
        const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
        this.setSave(`Not saved – retrying in ${Math.round(delay / 1000)} s (attempt ${attempt + 1})`, 'retry');
        await sleep(delay);
        if (token !== this.itemToken) return;
        this.setSave('Saving…', 'pending');
      }
    }
  }

  setSave(text, kind) {
    this.saveStatus.textContent = text;
    this.saveStatus.className = `ra-save ${kind}`;
    this.saveStatus.dataset.state = kind;
  }
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
