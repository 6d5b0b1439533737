// Measurements: a length caliper and an elliptical ROI (Cornerstone's tools draw them and compute their stats);
// this module turns the annotations into the records stored with the read (viewer_state.measurements).

import * as csTools from '@cornerstonejs/tools';

import { h } from './dom.js';

const { LengthTool, EllipticalROITool } = csTools;
const MAX_MEASUREMENTS = 50; // the server's bound

function round(v, digits = 2) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** The record of one annotation from its stats on its own slice, or null while they are not computed. */
function record(a, cells) {
  const tool = a.metadata && a.metadata.toolName;
  if (tool !== LengthTool.toolName && tool !== EllipticalROITool.toolName) return null;
  const imageId = a.metadata.referencedImageId;
  // Stats are cached per render target; only those of the annotation's own slice describe it.
  const stats = ((a.data && a.data.cachedStats) || {})[`imageId:${imageId}`];
  const cell = cells.find((c) => c.imageIds.includes(imageId));
  if (!stats || !cell) return null;
  const base = {
    series_role: cell.role,
    slice_index: cell.imageIds.indexOf(imageId),
    points_mm: (a.data.handles?.points || []).slice(0, 4).map((p) => p.map((v) => round(v, 2))),
  };
  if (tool === LengthTool.toolName) {
    return round(stats.length) === null ? null : { tool: 'length', ...base, length_mm: round(stats.length) };
  }
  if (round(stats.mean) === null) return null;
  return {
    tool: 'ellipse',
    ...base,
    mean_hu: round(stats.mean),
    sd_hu: round(stats.stdDev),
    area_mm2: round(stats.area),
    min_hu: round(stats.min),
    max_hu: round(stats.max),
  };
}

/**
 * The measurements of the current item, one record per annotation, taken while its slice is on screen: Cornerstone
 * recomputes stats on later renders, including renders of a hidden grid (while MPR is open) whose canvas has no
 * size, so a record is updated only from a visible viewport showing the annotation's slice.
 */
export class MeasurementLog {
  constructor() {
    this.records = new Map();
  }

  update(cells) {
    for (const a of csTools.annotation.state.getAllAnnotations() || []) {
      const imageId = a.metadata && a.metadata.referencedImageId;
      const cell = cells.find((c) => c.imageIds[c.sliceIndex()] === imageId);
      if (!cell || !cell.el.offsetWidth || !cell.el.offsetHeight) continue;
      const r = record(a, cells);
      if (r) this.records.set(a.annotationUID, r);
    }
  }

  /** Records of the annotations that still exist, in the order they were made. */
  list() {
    const alive = new Set((csTools.annotation.state.getAllAnnotations() || []).map((a) => a.annotationUID));
    return [...this.records.entries()].filter(([uid]) => alive.has(uid)).map(([, r]) => r).slice(0, MAX_MEASUREMENTS);
  }

  clear() {
    clearMeasurements();
    this.records.clear();
  }
}

export function clearMeasurements() {
  csTools.annotation.state.removeAllAnnotations();
}

/** One line of text per measurement, for the side panel's list. */
export function describe(m) {
  if (m.tool === 'length') return `${m.series_role} · slice ${m.slice_index + 1}: ${m.length_mm.toFixed(1)} mm`;
  return (
    `${m.series_role} · slice ${m.slice_index + 1}: mean ${m.mean_hu.toFixed(0)} HU, ` +
    `SD ${m.sd_hu.toFixed(0)}, area ${m.area_mm2.toFixed(0)} mm²`
  );
}

/** The tools panel: W/L, length, ellipse buttons and the list of this case's measurements. */
export class ToolsPanel {
  constructor({ onTool, onClear, onLayout, onMpr, onCine }) {
    this.buttons = {};
    const button = (key, testid, label, kbd) => {
      this.buttons[key] = h(
        'button',
        { type: 'button', class: 'ra-tool', dataset: { testid, tool: key }, 'aria-pressed': 'false', onclick: () => onTool(key) },
        label,
        ' ',
        h('kbd', { text: kbd }),
      );
      return this.buttons[key];
    };
    this.list = h('ul', { class: 'ra-measurements', dataset: { testid: 'measurement-list' } });
    this.layoutSelect = h(
      'select',
      { dataset: { testid: 'layout-select' }, 'aria-label': 'Hanging layout' },
      ['1x1', '1x2', '2x2'].map((v) => h('option', { value: v }, v)),
    );
    this.layoutSelect.addEventListener('change', () => onLayout(this.layoutSelect.value));
    this.mprBtn = h('button', { type: 'button', dataset: { testid: 'mpr-toggle' }, 'aria-pressed': 'false', onclick: onMpr }, 'MPR ', h('kbd', { text: 'x' }));
    this.cineBtn = h('button', { type: 'button', dataset: { testid: 'cine-toggle' }, 'aria-pressed': 'false', onclick: onCine }, 'Cine ', h('kbd', { text: 'c' }));
    this.el = h(
      'section',
      { class: 'ra-panel ra-tools' },
      h('h3', { text: 'Tools' }),
      h(
        'div',
        { class: 'ra-tool-buttons' },
        button('wl', 'tool-wl', 'W/L', 'w'),
        button('length', 'measure-length', 'Length', 'l'),
        button('ellipse', 'measure-roi', 'Ellipse ROI', 'e'),
        h('button', { type: 'button', dataset: { testid: 'measure-clear' }, onclick: onClear }, 'Clear'),
      ),
      this.list,
      h('div', { class: 'ra-tool-buttons' }, h('label', {}, 'Layout ', this.layoutSelect), this.mprBtn, this.cineBtn),
    );
  }

  setTool(key) {
    for (const [k, b] of Object.entries(this.buttons)) {
      b.classList.toggle('active', k === key);
      b.setAttribute('aria-pressed', String(k === key));
    }
  }

  setLayout(layout) {
    this.layoutSelect.value = layout;
  }

  setToggles({ mpr, cine }) {
    if (mpr !== undefined) {
      this.mprBtn.classList.toggle('active', mpr);
      this.mprBtn.setAttribute('aria-pressed', String(mpr));
    }
    if (cine !== undefined) {
      this.cineBtn.classList.toggle('active', cine);
      this.cineBtn.setAttribute('aria-pressed', String(cine));
    }
  }

  showMeasurements(list) {
    this.list.replaceChildren(...list.map((m) => h('li', { dataset: { tool: m.tool } }, describe(m))));
  }
}
