// Cornerstone3D set-up and one series viewport (a cell of the hanging layout): the stack, its corner texts
// (slice, position and thickness, window, orientation letters, HU under the cursor), the lesion marker and the DL
// overlay canvas. Cornerstone is initialised once per page; items swap stacks with setStack().

import {
  Enums as csEnums,
  RenderingEngine,
  cache,
  getRenderingCapabilities,
  getShouldUseCPURendering,
  imageLoader,
  init as csInit,
  metaData,
  utilities as csUtils,
} from '@cornerstonejs/core';
import * as csTools from '@cornerstonejs/tools';
import { init as dicomLoaderInit } from '@cornerstonejs/dicom-image-loader';

import { h } from './dom.js';
import { MARKER_COLOR } from './legend.js';
import { edgeLabels } from './orientation.js';

const { ToolGroupManager, WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, EllipticalROITool } =
  csTools;
const { CrosshairsTool } = csTools;
const { MouseBindings, KeyboardBindings } = csTools.Enums;

export const ENGINE_ID = 'reading-engine';
export const STACK_TOOLS = 'reading-stack-tools';
const SVG_NS = 'http://www.w3.org/2000/svg';

let initialised = null;

/** Initialise Cornerstone core, tools and the DICOM loader once. Resolves to {cpu, renderer, engine}. */
export function initCornerstone() {
  if (!initialised) {
    initialised = (async () => {
      csInit();
      csTools.init();
      const cores = navigator.hardwareConcurrency || 2;
      dicomLoaderInit({ maxWebWorkers: Math.max(1, Math.min(4, Math.floor(cores / 2))) });
      for (const tool of [WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, EllipticalROITool, CrosshairsTool]) {
        csTools.addTool(tool);
      }
      const group = ToolGroupManager.createToolGroup(STACK_TOOLS);
      for (const tool of [WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, EllipticalROITool]) {
        group.addTool(tool.toolName);
      }
      group.setToolActive(PanTool.toolName, {
        bindings: [
          { mouseButton: MouseBindings.Auxiliary },
          { mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Shift },
        ],
      });
      group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
      group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
      setPrimaryTool(group, WindowLevelTool.toolName);
      const caps = getRenderingCapabilities();
      const engine = new RenderingEngine(ENGINE_ID);
      return { cpu: getShouldUseCPURendering(), renderer: caps.renderer || '', engine, group };
    })();
  }
  return initialised;
}

const PRIMARY_TOOLS = { wl: WindowLevelTool.toolName, length: LengthTool.toolName, ellipse: EllipticalROITool.toolName };

/** Bind the left mouse button to one tool (W/L or a measuring tool); the others keep drawing their annotations. */
export function setPrimaryTool(group, toolName) {
  for (const name of Object.values(PRIMARY_TOOLS)) {
    if (name === toolName) continue;
    if (name === WindowLevelTool.toolName) group.setToolDisabled(name);
    else group.setToolPassive(name);
  }
  group.setToolActive(toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
}

export function primaryToolName(key) {
  return PRIMARY_TOOLS[key];
}

export function toImageId(url) {
  return `wadouri:${new URL(url, window.location.href).href}`;
}

export function loadImages(imageIds, onProgress) {
  let done = 0;
  onProgress?.(0, imageIds.length);
  return Promise.all(
    imageIds.map((id) =>
      imageLoader.loadAndCacheImage(id).then((image) => {
        done += 1;
        onProgress?.(done, imageIds.length);
        return image;
      }),
    ),
  );
}

export function uncache(imageId) {
  try {
    cache.removeImageLoadObject(imageId, { force: true });
  } catch {
    // not cached
  }
}

function sub(a, b) {
  return [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
}
function dot(a, b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
function cross(a, b) {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}
function round(value, digits) {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Geometry of a loaded stack from its DICOM headers: the slice normal and each slice's position along it. */
export function stackGeometry(imageIds) {
  const planes = imageIds.map((id) => metaData.get('imagePlaneModule', id) || {});
  const first = planes.find((p) => p.rowCosines) || {};
  const row = first.rowCosines || [1, 0, 0];
  const col = first.columnCosines || [0, 1, 0];
  const normal = cross(row, col);
  const positions = planes.map((p) => (p.imagePositionPatient ? dot(p.imagePositionPatient, normal) : NaN));
  const complete = positions.every(Number.isFinite);
  return { normal, positions, planes, complete, frameOfReference: first.frameOfReferenceUID || null };
}

export class SeriesViewport {
  constructor(engine, viewportId, hooks = {}) {
    this.engine = engine;
    this.viewportId = viewportId;
    this.hooks = hooks;
    this.imageIds = [];
    this.geometry = null;
    this.role = '';
    this.lesion = null;
    this.markerVisible = true;
    this.overlay = null;
    this.initialVoi = null;
    this.el = h('div', { class: 'ra-viewport', dataset: { testid: 'viewport' }, tabindex: '0', 'aria-label': 'Image viewer' });
    this.overlayCanvas = h('canvas', { class: 'ra-overlay', dataset: { testid: 'overlay-canvas' }, 'aria-hidden': 'true' });
    this.svg = document.createElementNS(SVG_NS, 'svg');
    this.svg.setAttribute('class', 'ra-marker');
    this.svg.setAttribute('aria-hidden', 'true');
    this.sliceEl = h('div', { dataset: { testid: 'slice-indicator' } });
    this.positionEl = h('div', { dataset: { testid: 'slice-position' } });
    this.wlEl = h('div', { dataset: { testid: 'window-level' } });
    this.presetEl = h('div', { class: 'ra-preset-name' });
    this.roleEl = h('div', { class: 'ra-role' });
    this.huEl = h('div', { dataset: { testid: 'hu-readout' } }, 'HU –');
    this.sides = {};
    const markers = ['top', 'bottom', 'left', 'right'].map((side) => {
      this.sides[side] = h('div', { class: `ra-orient ra-orient-${side}`, dataset: { testid: 'orientation-marker', side } });
      return this.sides[side];
    });
    this.cell = h(
      'div',
      { class: 'ra-cell' },
      this.el,
      this.overlayCanvas,
      this.svg,
      h('div', { class: 'ra-corner ra-tl' }, this.sliceEl, this.positionEl),
      h('div', { class: 'ra-corner ra-tr' }, this.roleEl, this.huEl),
      h('div', { class: 'ra-corner ra-bl' }, this.wlEl),
      h('div', { class: 'ra-corner ra-br' }, this.presetEl),
      markers,
    );
  }

  /** Enable the Cornerstone viewport (the cell must be in the document). */
  enable(group) {
    this.engine.enableElement({
      viewportId: this.viewportId,
      type: csEnums.ViewportType.STACK,
      element: this.el,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewport = this.engine.getViewport(this.viewportId);
    // Cornerstone sets tabIndex -1 on the element: put it back in the tab order so Tab/Shift+Tab reach and leave it.
    this.el.tabIndex = 0;
    group.addViewport(this.viewportId, ENGINE_ID);
    this.group = group;
    this.el.addEventListener('contextmenu', (e) => e.preventDefault());
    const E = csEnums.Events;
    this.el.addEventListener(E.IMAGE_RENDERED, () => this.afterRender());
    this.el.addEventListener(E.STACK_NEW_IMAGE, () => this.hooks.onSlice?.(this));
    this.el.addEventListener(E.VOI_MODIFIED, () => this.hooks.onVoi?.(this));
    this.el.addEventListener('mousemove', (e) => this.showHu(e));
    this.el.addEventListener('mouseleave', () => (this.huEl.textContent = 'HU –'));
    this.el.addEventListener('pointerdown', () => this.hooks.onActivate?.(this));
  }

  disable() {
    this.stopCine?.();
    try {
      this.group?.removeViewports(ENGINE_ID, this.viewportId);
      this.engine.disableElement(this.viewportId);
    } catch {
      // already gone
    }
    this.cell.remove();
  }

  async show(imageIds, { role, sliceIndex, voi, lesion }) {
    this.imageIds = imageIds;
    this.role = role;
    this.el.dataset.seriesRole = role;
    this.roleEl.textContent = role;
    this.lesion = lesion || null;
    this.geometry = stackGeometry(imageIds);
    const index = Math.min(Math.max(0, sliceIndex ?? Math.floor(imageIds.length / 2)), imageIds.length - 1);
    // Listening from before setStack: the page waits for this first render, not for another one after it.
    this.firstRender = this.renderEvent();
    await this.viewport.setStack(imageIds, index);
    this.initialVoi = voi;
    this.viewport.resetCamera();
    if (voi) this.setVoi(voi.width, voi.level);
    this.viewport.render();
  }

  sliceIndex() {
    return this.viewport ? this.viewport.getCurrentImageIdIndex() : 0;
  }

  /** Re-read the slice geometry once every slice's header is loaded (the first image shows before the rest). */
  refreshGeometry() {
    this.geometry = stackGeometry(this.imageIds);
  }

  /** Position (mm along the series' normal) of the current slice. */
  positionMm() {
    return this.geometry ? this.geometry.positions[this.sliceIndex()] : NaN;
  }

  async scrollTo(index) {
    const n = this.imageIds.length;
    if (!n) return;
    const target = Math.min(Math.max(0, index < 0 ? n + index : index), n - 1);
    if (target !== this.sliceIndex()) await this.viewport.setImageIdIndex(target);
  }

  scrollBy(delta) {
    return this.scrollTo(this.sliceIndex() + delta);
  }

  voi() {
    const props = this.viewport.getProperties();
    if (!props.voiRange) return null;
    const { windowWidth, windowCenter } = csUtils.windowLevel.toWindowLevel(props.voiRange.lower, props.voiRange.upper);
    return { width: windowWidth, level: windowCenter };
  }

  setVoi(width, level) {
    this.viewport.setProperties({ voiRange: csUtils.windowLevel.toLowHighRange(width, level) });
    this.viewport.render();
  }

  fit() {
    this.viewport.resetCamera({ resetPan: true, resetZoom: true });
    this.viewport.render();
  }

  reset() {
    this.viewport.resetCamera({ resetPan: true, resetZoom: true });
    if (this.initialVoi) this.setVoi(this.initialVoi.width, this.initialVoi.level);
    this.viewport.render();
  }

  state() {
    const voi = this.voi();
    let zoom = null;
    let pan = null;
    try {
      zoom = this.viewport.getZoom();
      pan = Array.from(this.viewport.getPan());
    } catch {
      // camera not ready
    }
    return {
      series_role: this.role,
      window_width: voi ? round(voi.width, 2) : null,
      window_level: voi ? round(voi.level, 2) : null,
      zoom: zoom === null ? null : round(zoom, 4),
      pan: pan ? pan.map((v) => round(v, 3)) : null,
      slice_index: this.sliceIndex(),
    };
  }

  /** Go to the lesion's slice and pan so that its centre is in the middle of the viewport. */
  async jumpToLesion() {
    if (!this.lesion) return;
    await this.scrollTo(this.lesion.slice_index);
    const camera = this.viewport.getCamera();
    const target = [this.lesion.x_mm, this.lesion.y_mm, this.lesion.z_mm];
    const n = camera.viewPlaneNormal;
    const d = target.map((v, i) => v - camera.focalPoint[i]);
    const along = dot(d, n);
    const inPlane = d.map((v, i) => v - along * n[i]);
    this.viewport.setCamera({
      focalPoint: camera.focalPoint.map((v, i) => v + inPlane[i]),
      position: camera.position.map((v, i) => v + inPlane[i]),
    });
    this.viewport.render();
  }

  // --- chrome --------------------------------------------------------------------------------------------------

  afterRender() {
    this.drawOverlay();
    this.drawMarker();
    this.updateChrome();
    this.hooks.onRender?.(this);
  }

  updateChrome() {
    const k = this.sliceIndex();
    const n = this.imageIds.length;
    if (!n) return;
    const onLesion = this.lesion && k === this.lesion.slice_index;
    this.sliceEl.textContent = `slice ${k + 1}/${n}${onLesion ? ' · lesion' : ''}`;
    const plane = this.geometry?.planes[k] || {};
    const pos = this.geometry?.positions[k];
    const thickness = Number(plane.sliceThickness);
    this.positionEl.textContent =
      `Pos ${Number.isFinite(pos) ? pos.toFixed(1) : '?'} mm` +
      (Number.isFinite(thickness) && thickness > 0 ? ` · Thk ${thickness.toFixed(1)} mm` : '');
    const voi = this.voi();
    if (voi) this.wlEl.textContent = `W ${Math.round(voi.width)} / L ${Math.round(voi.level)}`;
    const labels = this.edgeLabels();
    if (labels) for (const side of Object.keys(this.sides)) this.sides[side].textContent = labels[side];
  }

  /** R/L/A/P/S/I letters at the edges, from the camera: where one canvas pixel to the right and down points. */
  edgeLabels() {
    try {
      const cx = this.el.clientWidth / 2;
      const cy = this.el.clientHeight / 2;
      const o = this.viewport.canvasToWorld([cx, cy]);
      const right = sub(this.viewport.canvasToWorld([cx + 1, cy]), o);
      const down = sub(this.viewport.canvasToWorld([cx, cy + 1]), o);
      return edgeLabels(right, down);
    } catch {
      return null;
    }
  }

  /** HU under the cursor: the stored value through the rescale (already applied where the loader pre-scaled). */
  showHu(event) {
    const imageId = this.imageIds[this.sliceIndex()];
    const image = imageId && cache.getImage(imageId);
    if (!image) return;
    const rect = this.el.getBoundingClientRect();
    try {
      const world = this.viewport.canvasToWorld([event.clientX - rect.left, event.clientY - rect.top]);
      const [i, j] = csUtils.worldToImageCoords(imageId, world).map(Math.round);
      if (i < 0 || j < 0 || i >= image.columns || j >= image.rows) {
        this.huEl.textContent = 'HU –';
        return;
      }
      const raw = image.getPixelData()[j * image.columns + i];
      const scaled = image.preScale && image.preScale.scaled;
      const hu = scaled ? raw : raw * (image.slope ?? 1) + (image.intercept ?? 0);
      this.huEl.textContent = `HU ${Math.round(hu)} (${i}, ${j})`;
      this.lastHu = Math.round(hu);
    } catch {
      // cursor outside the image
    }
  }

  /** Affine map image pixel (i, j) -> canvas CSS pixels, [a, b, c, d, e, f], for the current slice. */
  imageToCanvasTransform() {
    const imageId = this.imageIds[this.sliceIndex()];
    if (!imageId) return null;
    const p = (x, y) => this.viewport.worldToCanvas(csUtils.imageToWorldCoords(imageId, [x, y]));
    const o = p(0, 0);
    const u = p(1, 0);
    const v = p(0, 1);
    return [u[0] - o[0], u[1] - o[1], v[0] - o[0], v[1] - o[1], o[0], o[1]];
  }

  // --- DL overlay ----------------------------------------------------------------------------------------------

  setOverlay(overlay) {
    this.overlay?.clear();
    this.overlay = overlay;
    this.drawOverlay();
  }

  drawOverlay() {
    if (!this.overlay) {
      const ctx = this.overlayCanvas.getContext('2d');
      ctx.clearRect(0, 0, this.overlayCanvas.width, this.overlayCanvas.height);
      return;
    }
    let transform;
    try {
      transform = this.imageToCanvasTransform();
    } catch {
      transform = null; // camera not ready: nothing is drawn
    }
    this.overlay.draw(this.sliceIndex(), transform);
  }

  // --- lesion marker -------------------------------------------------------------------------------------------

  setMarkerVisible(visible) {
    this.markerVisible = visible;
    this.drawMarker();
  }

  /** Canvas position of the lesion centre and the scale, for the marker (and the tests). */
  lesionOnCanvas() {
    const lesion = this.lesion;
    if (!lesion) return null;
    const world = [lesion.x_mm, lesion.y_mm, lesion.z_mm];
    const centre = this.viewport.worldToCanvas(world);
    const up = this.viewport.getCamera().viewUp;
    const other = this.viewport.worldToCanvas(world.map((v, i) => v + 10 * up[i]));
    const pxPerMm = Math.hypot(other[0] - centre[0], other[1] - centre[1]) / 10 || 1;
    return { x: centre[0], y: centre[1], pxPerMm };
  }

  drawMarker() {
    const svg = this.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const lesion = this.lesion;
    if (!lesion || !this.markerVisible || !this.imageIds.length) return;
    const distance = Math.abs(this.sliceIndex() - lesion.slice_index);
    if (distance > 2) return;
    let at;
    try {
      at = this.lesionOnCanvas();
    } catch {
      return;
    }
    if (!at || !Number.isFinite(at.x) || !Number.isFinite(at.y)) return;
    // Ticks start outside the lesion: the server's gap (rounded up from the reference radius) or 12 px at least.
    const gap = Math.max(12, Number(lesion.marker_gap_mm || 9) * at.pxPerMm);
    const len = 14;
    const g = document.createElementNS(SVG_NS, 'g');
    g.setAttribute('class', distance === 0 ? 'on-slice' : 'near-slice');
    g.setAttribute('data-testid', 'lesion-marker');
    g.setAttribute('data-color', MARKER_COLOR.join(','));
    g.setAttribute('data-gap-px', String(Math.round(gap)));
    g.style.stroke = `rgb(${MARKER_COLOR.join(',')})`;
    for (const [dx, dy] of [
      [1, 0],
      [-1, 0],
      [0, 1],
      [0, -1],
    ]) {
      const line = document.createElementNS(SVG_NS, 'line');
      line.setAttribute('x1', at.x + dx * gap);
      line.setAttribute('y1', at.y + dy * gap);
      line.setAttribute('x2', at.x + dx * (gap + len));
      line.setAttribute('y2', at.y + dy * (gap + len));
      g.appendChild(line);
    }
    svg.appendChild(g);
  }

  /** Resolve at the next IMAGE_RENDERED (or after timeoutMs), without asking for a render. */
  renderEvent(timeoutMs = 2000) {
    return new Promise((resolve) => {
      const E = csEnums.Events.IMAGE_RENDERED;
      const done = () => {
        clearTimeout(timer);
        this.el.removeEventListener(E, done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.el.addEventListener(E, done);
    });
  }
}
