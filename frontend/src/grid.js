// The hanging layout: one SeriesViewport per shown series (1x1, 1x2, 2x2), synchronised scrolling by patient
// position, the active cell (keys, cine, MPR act on it) and a series switcher where a case has more series than
// the layout has cells.

import { h } from './dom.js';
import { nearestSlice } from './orientation.js';
import { SeriesViewport } from './viewer.js';

export const LAYOUTS = { '1x1': 1, '1x2': 2, '2x2': 4 };
const CINE_FPS = 10;

let viewportCounter = 0;

export class ViewerGrid {
  constructor(engine, group, hooks = {}) {
    this.engine = engine;
    this.group = group;
    this.hooks = hooks;
    this.cells = [];
    this.series = [];
    this.layout = '1x1';
    this.active = null;
    this.cine = null;
    this.el = h('div', { class: 'ra-grid layout-1x1', dataset: { testid: 'viewer' } });
    this.tabs = h('div', { class: 'ra-series-tabs', hidden: true });
  }

  /** Cells needed for a layout and a number of series. */
  static cellCount(layout, nSeries) {
    return Math.max(1, Math.min(LAYOUTS[layout] || 1, nSeries));
  }

  /** Make exactly n cells, reusing the existing ones (enabling a viewport costs more than a new stack). */
  ensureCells(n) {
    while (this.cells.length > n) this.cells.pop().disable();
    while (this.cells.length < n) {
      const cell = new SeriesViewport(this.engine, `reading-vp-${(viewportCounter += 1)}`, {
        onSlice: (c) => this.onSlice(c),
        onVoi: (c) => this.hooks.onVoi?.(c),
        onRender: (c) => this.hooks.onRender?.(c),
        onActivate: (c) => this.setActive(c),
      });
      this.el.append(cell.cell);
      cell.enable(this.group);
      this.cells.push(cell);
    }
    this.engine.resize(true, true);
  }

  /**
   * Show an item's series. `series`: [{role, label, primary, imageIds}]; assignment: the primary series first,
   * then the others in the manifest's order.
   */
  async show(series, layout, { lesion, voi }) {
    this.stopCine();
    this.series = series;
    this.layout = LAYOUTS[layout] ? layout : '1x1';
    const n = ViewerGrid.cellCount(this.layout, series.length);
    this.el.className = `ra-grid layout-${n === 1 ? '1x1' : this.layout}`;
    this.ensureCells(n);
    this.assigned = series.slice(0, n);
    await Promise.all(this.cells.map((cell, i) => this.showIn(cell, this.assigned[i], { lesion, voi })));
    this.setActive(this.cells[0]);
    this.renderTabs();
  }

  showIn(cell, s, { lesion, voi }) {
    // The marker and lesion slice belong to the series the lesion was located on (the primary one).
    const onPrimary = s.primary;
    return cell.show(s.imageIds, {
      role: s.role,
      sliceIndex: onPrimary && lesion ? lesion.slice_index : undefined,
      voi,
      lesion: onPrimary ? lesion : null,
    });
  }

  renderTabs() {
    const hidden = this.series.length <= this.cells.length;
    this.tabs.hidden = hidden;
    if (hidden) return this.tabs.replaceChildren();
    this.tabs.replaceChildren(
      ...this.series.map((s, i) =>
        h(
          'button',
          {
            type: 'button',
            class: this.active && this.active.role === s.role ? 'active' : '',
            dataset: { testid: 'series-tab', seriesRole: s.role },
            onclick: () => this.showSeriesInActive(i),
          },
          s.label || s.role,
        ),
      ),
    );
  }

  async showSeriesInActive(i) {
    const cell = this.active || this.cells[0];
    const s = this.series[i];
    const voi = cell.voi();
    await this.showIn(cell, s, { lesion: this.hooks.lesion?.(), voi });
    this.syncFrom(this.primaryCell() || cell);
    this.renderTabs();
    this.hooks.onSeriesChange?.(cell);
  }

  setActive(cell) {
    if (!cell || this.active === cell) return;
    this.active?.cell.classList.remove('active');
    this.active = cell;
    cell.cell.classList.toggle('active', this.cells.length > 1);
  }

  primaryCell() {
    const role = this.series.find((s) => s.primary)?.role;
    return this.cells.find((c) => c.role === role) || null;
  }

  // --- synchronised scrolling ------------------------------------------------------------------------------

  onSlice(cell) {
    this.hooks.onSlice?.(cell);
    if (cell.syncTarget !== undefined && cell.syncTarget === cell.sliceIndex()) {
      cell.syncTarget = undefined; // moved by the sync itself: do not echo it back
      return;
    }
    this.syncFrom(cell);
  }

  /** Every slice is loaded: complete each cell's geometry and bring the others to the primary's position. */
  geometryLoaded() {
    for (const cell of this.cells) cell.refreshGeometry();
    const primary = this.primaryCell();
    if (primary) this.syncFrom(primary);
  }

  /** Move every other cell to the slice nearest the source cell's current slice position. */
  syncFrom(source) {
    const k = source.sliceIndex();
    const ipp = source.geometry?.planes[k]?.imagePositionPatient;
    if (!ipp) return;
    for (const other of this.cells) {
      if (other === source || !other.geometry || !other.geometry.complete) continue;
      if (source.geometry.frameOfReference !== other.geometry.frameOfReference) continue;
      const n = other.geometry.normal;
      const target = nearestSlice(other.geometry.positions, ipp[0] * n[0] + ipp[1] * n[1] + ipp[2] * n[2]);
      if (target !== other.sliceIndex()) {
        other.syncTarget = target;
        other.scrollTo(target);
      }
    }
  }

  // --- cine --------------------------------------------------------------------------------------------------

  toggleCine() {
    if (this.cine) return this.stopCine();
    const cell = this.active || this.cells[0];
    if (!cell) return false;
    this.cine = setInterval(() => {
      const n = cell.imageIds.length;
      if (n) cell.scrollTo((cell.sliceIndex() + 1) % n);
    }, 1000 / CINE_FPS);
    return true;
  }

  stopCine() {
    clearInterval(this.cine);
    this.cine = null;
    return false;
  }

  state() {
    return {
      layout: this.layout,
      active_series: this.active ? this.active.role : null,
      viewports: this.cells.map((c) => c.state()),
    };
  }
}
