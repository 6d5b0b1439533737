// The viewer side of the reading page: the hanging-layout grid, MPR, the DL panel and overlay, measuring tools,
// window presets and the keyboard commands, for one item at a time. The session loop (session.js) drives it.

import { eventTarget } from '@cornerstonejs/core';
import * as csTools from '@cornerstonejs/tools';

import { fetchBytes } from './api.js';
import { h } from './dom.js';
import { ClinicalPanel } from './clinical.js';
import { DlPanel } from './dlpanel.js';
import { ViewerGrid } from './grid.js';
import { KEY_HELP } from './keys.js';
import { colorTable, legendEntries } from './legend.js';
import { MeasurementLog, ToolsPanel } from './measure.js';
import { MprView } from './mpr.js';
import { LabelmapOverlay, presentValues } from './overlay.js';
import { loadImages, primaryToolName, setPrimaryTool, toImageId, uncache } from './viewer.js';

/** The item's series as the grid shows them; an item from before multi-series support has only `images`. */
export function itemSeries(item) {
  const list = Array.isArray(item.series) && item.series.length ? item.series : [{ role: 'CT', primary: true, images: item.images }];
  const shaped = list.map((s) => ({ role: String(s.role), label: s.label || String(s.role), primary: !!s.primary, imageIds: s.images.map(toImageId) }));
  return [...shaped.filter((s) => s.primary), ...shaped.filter((s) => !s.primary)];
}

export class Workstation {
  /**
   * @param {object} caps       initCornerstone()'s result (engine, tool group)
   * @param {object} hooks      window.readingApp (test hooks, updated here)
   * @param {object} callbacks  {onFocusRating()}
   */
  constructor(caps, hooks, callbacks = {}) {
    this.hooks = hooks;
    this.callbacks = callbacks;
    this.item = null;
    this.series = [];
    this.legend = [];
    this.overlay = null;
    this.preset = null;
    this.grid = new ViewerGrid(caps.engine, caps.group, {
      onSlice: (cell) => this.onSlice(cell),
      onVoi: () => this.onVoi(),
      lesion: () => this.item && this.item.lesion,
      onSeriesChange: () => this.applyOverlay(),
    });
    this.mpr = new MprView(caps.engine);
    this.log = new MeasurementLog();
    this.curtainText = h('div', { class: 'ra-curtain-text', dataset: { testid: 'loading' } }, 'Loading…');
    this.loadingEl = h('div', { class: 'ra-loading', dataset: { testid: 'slices-loading' }, hidden: true });
    this.viewerWrap = h('div', { class: 'ra-viewer-wrap blank' }, this.grid.tabs, this.grid.el, this.mpr.el, this.loadingEl, h('div', { class: 'ra-curtain' }, this.curtainText));
    this.grid.el.addEventListener('keydown', (e) => this.onViewerKey(e), true);
    this.banner = h('div', { class: 'ra-banner', dataset: { testid: 'modality-banner' }, role: 'status' });
    this.dl = new DlPanel({ onChange: () => this.applyOverlay() });
    this.clinical = new ClinicalPanel();
    this.tools = new ToolsPanel({
      onTool: (key) => this.setTool(key),
      onClear: () => {
        this.log.clear();
        this.refreshMeasurements();
      },
      onLayout: (layout) => this.changeLayout(layout),
      onMpr: () => this.toggleMpr(),
      onCine: () => this.toggleCine(),
    });
    this.presetPanel = h('section', { class: 'ra-panel ra-presets' });
    this.help = h(
      'details',
      { class: 'ra-panel ra-help', dataset: { testid: 'key-help' } },
      h('summary', {}, 'Mouse and keys'),
      h('ul', {}, KEY_HELP.map(([keys, what]) => h('li', {}, h('kbd', { text: keys }), ` ${what}`))),
    );
    this.setTool('wl');
    // Measurements are listed as the reader makes them (and stored with the read); stats settle after a render.
    // Records are taken when the reader makes or changes a measurement (Cornerstone recomputes stats on later
    // renders, which must not rewrite what the reader measured).
    let pending = [];
    const refresh = () => {
      pending.forEach(clearTimeout);
      pending = [100, 500].map((ms) => setTimeout(() => this.refreshMeasurements(true), ms));
    };
    const E = csTools.Enums.Events;
    for (const name of [E.ANNOTATION_COMPLETED, E.ANNOTATION_MODIFIED, E.ANNOTATION_REMOVED]) eventTarget.addEventListener(name, refresh);
  }

  /** Hide the image while the next case loads. */
  blank(text) {
    this.viewerWrap.classList.add('blank');
    this.curtainText.textContent = text;
  }

  reveal() {
    this.viewerWrap.classList.remove('blank');
  }

  stop() {
    this.grid.stopCine();
    this.mpr.close();
  }

  reset(item) {
    this.item = item;
    this.stop();
    this.grid.el.hidden = false;
    this.preset = null;
    this.overlay = null;
    this.mprUsed = false;
    this.log.clear();
    this.tools.showMeasurements([]);
    this.tools.setToggles({ mpr: false, cine: false });
    this.renderItemInfo(item);
  }

  /**
   * Load and show an item: first the slice each series opens on (the lesion's slice of the primary series), so
   * the reader sees the case at once; the study's default window; the DL overlay where the server sent one. The
   * other slices load behind it (`this.loaded`; scrolling to a slice not yet loaded loads it on demand).
   * Resolves false where the first images could not be loaded or the page moved on.
   */
  async show(item, isCurrent, onRetry) {
    const previous = this.series.flatMap((s) => s.imageIds);
    this.series = itemSeries(item);
    const allIds = this.series.flatMap((s) => s.imageIds);
    const dl = item.dl || null;
    const overlayPromise = dl && dl.overlay_url ? fetchBytes(dl.overlay_url) : null;
    overlayPromise?.catch(() => {}); // handled in loadOverlay
    const lesionSlice = item.lesion ? item.lesion.slice_index : null;
    const firstIds = this.series.map((s) => s.imageIds[s.primary && lesionSlice !== null ? lesionSlice : Math.floor(s.imageIds.length / 2)]);
    this.hooks.loaded = false;
    try {
      this.curtainText.textContent = 'Loading images…';
      await loadImages(firstIds.filter(Boolean));
    } catch (err) {
      if (!isCurrent()) return false;
      console.error('image load failed', err);
      this.curtainText.replaceChildren('The images of this case could not be loaded. ', h('button', { type: 'button', onclick: onRetry }, 'Try again'));
      return false;
    }
    if (!isCurrent()) return false;
    performance.mark?.('reading:first-images');
    const presets = item.window_presets || [];
    const preset = presets.find((p) => String(p.key) === String(item.default_preset)) || presets[0];
    await this.grid.show(this.series, item.layout || '1x1', { lesion: item.lesion, voi: preset ? { width: preset.width, level: preset.level } : null });
    this.tools.setLayout(this.grid.layout);
    this.preset = preset ? preset.key : null;
    const keep = new Set(allIds);
    for (const id of previous) if (!keep.has(id)) uncache(id);
    this.loaded = this.loadRest(allIds, isCurrent);
    if (overlayPromise && isCurrent()) await this.loadOverlay(item, overlayPromise, isCurrent);
    if (!isCurrent()) return false;
    await this.grid.cells[0].firstRender;
    this.updateCorners();
    this.grid.cells[0].el.focus({ preventScroll: true });
    return isCurrent();
  }

  /** The remaining slices, behind the shown ones; then the geometry for synchronised scrolling is complete. */
  async loadRest(allIds, isCurrent) {
    this.loadingEl.hidden = false;
    try {
      await loadImages(allIds, (done, total) => {
        if (isCurrent()) this.loadingEl.textContent = `Loading slices ${done} / ${total}`;
      });
    } catch (err) {
      if (isCurrent()) this.loadingEl.textContent = 'Some slices could not be loaded: scroll to them to retry.';
      console.error('slice load failed', err);
      return false;
    }
    if (!isCurrent()) return false;
    this.loadingEl.hidden = true;
    this.grid.geometryLoaded();
    this.updateCorners();
    this.hooks.loaded = true;
    return true;
  }

  renderItemInfo(item) {
    const modality = item.modality || {};
    this.banner.replaceChildren(
      h('span', { class: 'ra-banner-label' }, modality.label || (modality.shows_dl ? 'DL-assisted' : 'Unaided')),
      h('span', { class: 'ra-banner-note' }, modality.shows_dl ? 'DL output shown' : 'no DL output'),
    );
    this.banner.className = `ra-banner ${modality.shows_dl ? 'aided' : 'unaided'}`;
    this.banner.dataset.modality = modality.key || '';
    this.clinical.show(item.clinical);
    const presets = item.window_presets || [];
    this.presetPanel.replaceChildren(
      h('h3', { text: 'Window' }),
      h(
        'div',
        { class: 'ra-preset-buttons' },
        presets.map((p) =>
          h('button', { type: 'button', class: 'ra-preset', dataset: { preset: p.key, testid: `preset-${p.key}` }, title: `W ${p.width} / L ${p.level}`, onclick: () => this.applyPreset(p.key) }, h('kbd', { text: p.key }), ` ${p.name}`),
        ),
      ),
    );
    this.legend = item.dl ? legendEntries(item.dl.labels) : [];
    if (item.dl) this.dl.show(item.dl, this.legend, item.overlay_defaults, item.label_legend || {});
    else this.dl.hide();
  }

  measurements() {
    return this.log.list();
  }

  viewportsInfo() {
    return this.grid.cells.map((c) => ({ role: c.role, sliceIndex: c.sliceIndex(), positionMm: c.positionMm() }));
  }

  prefetchNext(item, isCurrent) {
    this.hooks.prefetchDone = false;
    const images = item.next_images || [];
    // After this case's own slices: the next case must not compete with the one being read.
    Promise.resolve(this.loaded)
      .then(() => prefetch(images.map(toImageId), isCurrent))
      .then(() => {
      if (isCurrent()) this.hooks.prefetchDone = true;
    });
  }

  setTool(key) {
    const name = primaryToolName(key);
    if (!name || !this.grid) return;
    setPrimaryTool(this.grid.group, name);
    this.tool = key;
    this.tools.setTool(key);
  }

  refreshMeasurements(fromEvent = false) {
    if (fromEvent) this.log.update(this.grid.cells);
    this.tools.showMeasurements(this.log.list());
  }

  async changeLayout(layout) {
    if (!this.item || !this.hooks.ready) return;
    const keep = this.grid.cells.map((c) => c.state());
    await this.grid.show(this.series, layout, { lesion: this.item.lesion, voi: this.currentVoi() });
    const primary = this.grid.primaryCell();
    const before = keep.find((v) => v.series_role === primary?.role);
    if (primary && before) await primary.scrollTo(before.slice_index);
    this.tools.setLayout(this.grid.layout);
    this.applyOverlay();
  }

  async toggleMpr() {
    if (!this.hooks.ready) return;
    if (this.mpr.open) {
      this.mpr.close();
      this.grid.el.hidden = false;
    } else {
      const cell = this.grid.active || this.grid.cells[0];
      this.mprUsed = true;
      this.grid.stopCine();
      await this.loaded; // the volume needs every slice
      this.grid.el.hidden = true;
      await this.mpr.openFor(cell.imageIds, cell.role, cell.voi());
    }
    this.hooks.mpr = this.mpr.open;
    this.hooks.cine = false;
    this.tools.setToggles({ mpr: this.mpr.open, cine: false });
  }

  toggleCine() {
    if (!this.hooks.ready || this.mpr.open) return;
    this.hooks.cine = this.grid.toggleCine();
    this.tools.setToggles({ cine: this.hooks.cine });
  }

  async loadOverlay(item, overlayPromise, isCurrent) {
    const dl = item.dl;
    this.curtainText.textContent = 'Loading the DL overlay…';
    try {
      const { bytes, headers } = await overlayPromise;
      if (!isCurrent()) return;
      let shape = dl.overlay_shape;
      if (!Array.isArray(shape) || shape.length !== 3) shape = (headers.get('X-Overlay-Shape') || '').split(',').map(Number);
      const cell = this.overlayCell();
      const [n, rows, cols] = shape;
      const image = cell && cell.viewport.getImageData ? cell.viewport.getImageData() : null;
      if (!cell || n !== cell.imageIds.length || bytes.length !== n * rows * cols || (image && image.dimensions && (image.dimensions[0] !== cols || image.dimensions[1] !== rows))) {
        throw new Error(`overlay shape ${shape.join('x')} does not match the series (${cell ? cell.imageIds.length : '?'} slices)`);
      }
      this.overlay = new LabelmapOverlay(cell.overlayCanvas, bytes, shape, colorTable(this.legend));
      this.overlayPresent = presentValues(bytes);
      this.dl.show(dl, this.legend, item.overlay_defaults, item.label_legend || {}, this.overlayPresent);
      this.applyOverlay();
    } catch (err) {
      console.error('overlay failed', err);
      this.overlay = null;
      this.dl.dropOverlayControls(`The DL overlay could not be shown (${err.message || err}).`);
    }
  }

  overlayCell() {
    const role = this.item?.dl?.series_role;
    return (role && this.grid.cells.find((c) => c.role === role)) || this.grid.primaryCell() || this.grid.cells[0];
  }

  applyOverlay() {
    for (const cell of this.grid.cells) if (cell.overlay) cell.setOverlay(null);
    if (!this.overlay || !this.dl.state) return;
    const cell = this.overlayCell();
    this.overlay.canvas = cell.overlayCanvas;
    this.overlay.configure(this.dl.state);
    cell.setOverlay(this.overlay);
    this.hooks.overlayVisible = this.overlay.visible;
    this.hooks.overlayState = { mode: this.dl.state.mode, hidden: [...this.dl.state.hidden], opacity: this.dl.state.opacity };
  }

  onSlice(cell) {
    if (cell === this.grid.cells[0]) this.hooks.sliceIndex = cell.sliceIndex();
  }

  updateCorners() {
    const preset = this.currentPreset();
    for (const cell of this.grid.cells) {
      cell.updateChrome();
      cell.presetEl.textContent = preset ? preset.name : '';
    }
    this.hooks.sliceIndex = this.grid.cells[0]?.sliceIndex() ?? null;
    this.presetPanel.querySelectorAll('.ra-preset').forEach((b) => b.classList.toggle('active', !!preset && b.dataset.preset === preset.key));
  }

  currentPreset() {
    if (!this.item || this.preset === null) return null;
    return (this.item.window_presets || []).find((p) => p.key === this.preset) || null;
  }

  currentVoi() {
    return (this.grid.active || this.grid.cells[0])?.voi() || null;
  }

  onVoi() {
    // A drag with the window/level tool leaves the preset.
    const preset = this.currentPreset();
    const voi = this.currentVoi();
    if (preset && voi && (Math.abs(voi.width - preset.width) > 0.5 || Math.abs(voi.level - preset.level) > 0.5)) this.preset = null;
    this.updateCorners();
  }

  applyPreset(key) {
    const preset = (this.item?.window_presets || []).find((p) => String(p.key) === String(key));
    if (!preset || !this.hooks.ready) return;
    this.preset = preset.key;
    for (const cell of this.grid.cells) cell.setVoi(preset.width, preset.level);
    this.updateCorners();
  }

  viewerState() {
    if (!this.grid || !this.grid.cells.length) return null;
    const first = this.grid.cells[0].state();
    return {
      ...first,
      ...this.grid.state(),
      overlay_mode: this.dl.state ? this.dl.state.mode : null,
      overlay_hidden_labels: this.dl.state ? this.legend.filter((e) => this.dl.state.hidden.has(e.value)).map((e) => e.name) : null,
      overlay_visible: !!this.overlay && this.overlay.visible,
      overlay_opacity: this.dl.state ? this.dl.state.opacity : null,
      preset: this.preset,
      mpr_used: !!this.mprUsed,
      measurements: this.measurements(),
    };
  }

  onViewerKey(e) {
    if (e.key === 'Tab') e.stopPropagation();
  }

  run({ command, arg }) {
    const cell = this.grid.active || this.grid.cells[0];
    const actions = {
      'scroll-by': () => cell.scrollBy(arg),
      'scroll-to': () => cell.scrollTo(arg),
      fit: () => this.grid.cells.forEach((c) => c.fit()),
      reset: () => {
        this.grid.cells.forEach((c) => c.reset());
        this.preset = this.currentPresetKeyDefault();
        this.updateCorners();
      },
      'jump-to-lesion': () => this.grid.primaryCell()?.jumpToLesion(),
      'toggle-marker': () => this.grid.cells.forEach((c) => c.setMarkerVisible(!c.markerVisible)),
      'toggle-overlay': () => this.dl.toggleVisible(),
      'tool-length': () => this.setTool('length'),
      'tool-ellipse': () => this.setTool('ellipse'),
      'tool-wl': () => this.setTool('wl'),
      'toggle-cine': () => this.toggleCine(),
      'toggle-mpr': () => this.toggleMpr(),
      'focus-rating': () => this.callbacks.onFocusRating?.(),
      preset: () => this.applyPreset(arg),
    };
    actions[command]?.();
  }

  currentPresetKeyDefault() {
    const presets = this.item.window_presets || [];
    return (presets.find((p) => String(p.key) === String(this.item.default_preset)) || presets[0])?.key ?? null;
  }
}

/** Prefetch the next case's images into the cache in the background, two at a time, while it is still current. */
async function prefetch(imageIds, isCurrent) {
  const queue = [...imageIds];
  const worker = async () => {
    while (queue.length && isCurrent()) {
      try {
        await loadImages([queue.shift()]);
      } catch {
        // a prefetch failure only costs time later
      }
    }
  };
  await Promise.all([worker(), worker()]);
}
