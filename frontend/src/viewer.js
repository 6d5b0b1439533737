// Cornerstone3D stack viewer: one stack viewport, the mouse tools, a DL labelmap overlay and a lesion marker.
// Cornerstone is initialised once per page; items are swapped with setStack().

import {
  RenderingEngine,
  Enums as csEnums,
  init as csInit,
  imageLoader,
  cache,
  utilities as csUtils,
  getShouldUseCPURendering,
  getRenderingCapabilities,
} from '@cornerstonejs/core';
import * as csTools from '@cornerstonejs/tools';
import { init as dicomLoaderInit } from '@cornerstonejs/dicom-image-loader';

const {
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  PanTool,
  StackScrollTool,
  segmentation,
  Enums: toolEnums,
} = csTools;
const { MouseBindings, KeyboardBindings, SegmentationRepresentations } = toolEnums;

const ENGINE_ID = 'reading-engine';
const VIEWPORT_ID = 'reading-stack';
const TOOL_GROUP_ID = 'reading-tools';
const SVG_NS = 'http://www.w3.org/2000/svg';

// Colours per label value [r, g, b, a]; value 0 is background. Unknown values get the fallback palette.
const LABEL_COLORS = { liver: [46, 204, 113, 255], lesion: [255, 64, 32, 255] };
const FALLBACK_COLORS = [
  [255, 200, 0, 255],
  [0, 160, 255, 255],
  [200, 0, 255, 255],
  [0, 255, 220, 255],
];

let initialised = null;
const lutIndexes = new Map(); // colour LUT (as JSON) -> index registered with the tools, reused across items

/** Initialise Cornerstone core, tools and the DICOM loader once. Resolves to {cpu, renderer}. */
export function initCornerstone() {
  if (!initialised) {
    initialised = (async () => {
      csInit();
      csTools.init();
      const cores = navigator.hardwareConcurrency || 2;
      dicomLoaderInit({ maxWebWorkers: Math.max(1, Math.min(4, Math.floor(cores / 2))) });
      csTools.addTool(WindowLevelTool);
      csTools.addTool(ZoomTool);
      csTools.addTool(PanTool);
      csTools.addTool(StackScrollTool);
      const caps = getRenderingCapabilities();
      return { cpu: getShouldUseCPURendering(), renderer: caps.renderer || '', webgl2: !!caps.webgl2 };
    })();
  }
  return initialised;
}

export function toImageId(url) {
  return `wadouri:${new URL(url, window.location.href).href}`;
}

export class StackViewer {
  /**
   * @param {HTMLElement} element  the element the viewport renders into (gets the canvas)
   * @param {HTMLElement} wrap     positioned parent: the marker SVG is laid over the element in it
   * @param {object} hooks         {onSlice(index, n), onVoi({width, level}), onCamera()}
   */
  constructor(element, wrap, hooks = {}) {
    this.element = element;
    this.wrap = wrap;
    this.hooks = hooks;
    this.engine = null;
    this.viewport = null;
    this.imageIds = [];
    this.lesion = null;
    this.markerVisible = true;
    this.segmentationId = null;
    this.labelmapImageIds = [];
    this.overlayVisible = false;
    this.overlayOpacity = 0.5;
    this.initialVoi = null;
    this.prefetchToken = 0;
  }

  async setup() {
    this.engine = new RenderingEngine(ENGINE_ID);
    this.engine.enableElement({
      viewportId: VIEWPORT_ID,
      type: csEnums.ViewportType.STACK,
      element: this.element,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewport = this.engine.getViewport(VIEWPORT_ID);

    const group = ToolGroupManager.createToolGroup(TOOL_GROUP_ID);
    group.addTool(WindowLevelTool.toolName);
    group.addTool(ZoomTool.toolName);
    group.addTool(PanTool.toolName);
    group.addTool(StackScrollTool.toolName);
    group.addViewport(VIEWPORT_ID, ENGINE_ID);
    group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    group.setToolActive(PanTool.toolName, {
      bindings: [
        { mouseButton: MouseBindings.Auxiliary },
        { mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Shift },
      ],
    });
    group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    this.element.addEventListener('contextmenu', (e) => e.preventDefault());

    // The marker: an SVG laid over the canvas, redrawn after every render.
    this.svg = document.createElementNS(SVG_NS, 'svg');
    this.svg.setAttribute('class', 'ra-marker');
    this.svg.setAttribute('aria-hidden', 'true');
    this.wrap.appendChild(this.svg);

    const E = csEnums.Events;
    this.element.addEventListener(E.IMAGE_RENDERED, () => {
      this.drawMarker();
      this.hooks.onRender?.();
    });
    this.element.addEventListener(E.STACK_NEW_IMAGE, () => this.hooks.onSlice?.(this.sliceIndex(), this.imageIds.length));
    this.element.addEventListener(E.VOI_MODIFIED, () => this.hooks.onVoi?.(this.voi()));
    this.element.addEventListener(E.CAMERA_MODIFIED, () => this.hooks.onCamera?.());

    this.resizeObserver = new ResizeObserver(() => {
      if (!this.engine) return;
      this.engine.resize(true, true);
      this.drawMarker();
    });
    this.resizeObserver.observe(this.element);
  }

  // --- loading -------------------------------------------------------------------------------------------------

  /** Load (decode and cache) every image of a stack; onProgress(done, total). Rejects on the first failure. */
  async loadAll(imageIds, onProgress) {
    let done = 0;
    onProgress?.(0, imageIds.length);
    await Promise.all(
      imageIds.map((id) =>
        imageLoader.loadAndCacheImage(id).then((image) => {
          done += 1;
          onProgress?.(done, imageIds.length);
          return image;
        }),
      ),
    );
  }

  /** Prefetch another stack into the image cache in the background, two at a time; cancelled by the next call. */
  prefetch(imageIds) {
    const token = ++this.prefetchToken;
    const queue = [...imageIds];
    const worker = async () => {
      while (queue.length && token === this.prefetchToken) {
        const id = queue.shift();
        try {
          await imageLoader.loadAndCacheImage(id);
        } catch {
          // a prefetch failure only costs time later
        }
      }
    };
    return Promise.all([worker(), worker()]);
  }

  cancelPrefetch() {
    this.prefetchToken += 1;
  }

  /** Show a loaded stack: initial slice and window; the lesion for the marker and the `j` key. */
  async show(imageIds, { sliceIndex, voi, lesion }) {
    const previous = this.imageIds;
    this.imageIds = imageIds;
    this.lesion = lesion || null;
    const index = Math.min(Math.max(0, sliceIndex ?? 0), imageIds.length - 1);
    await this.viewport.setStack(imageIds, index);
    this.initialVoi = voi;
    this.viewport.resetCamera();
    if (voi) this.setVoi(voi.width, voi.level);
    this.viewport.render();
    // The previous item's images are no longer needed (the next item's prefetched ones are kept).
    const keep = new Set(imageIds);
    for (const id of previous) {
      if (!keep.has(id)) this.uncache(id);
    }
  }

  uncache(imageId) {
    try {
      cache.removeImageLoadObject(imageId, { force: true });
    } catch {
      // not cached
    }
  }

  cacheBytes() {
    return cache.getCacheSize();
  }

  imageSize() {
    const image = cache.getImage(this.imageIds[0]);
    return image ? { rows: image.rows, columns: image.columns } : null;
  }

  // --- state ---------------------------------------------------------------------------------------------------

  sliceIndex() {
    return this.viewport ? this.viewport.getCurrentImageIdIndex() : 0;
  }

  voi() {
    const props = this.viewport.getProperties();
    if (!props.voiRange) return null;
    const { windowWidth, windowCenter } = csUtils.windowLevel.toWindowLevel(props.voiRange.lower, props.voiRange.upper);
    return { width: windowWidth, level: windowCenter };
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
      window_width: voi ? round(voi.width, 2) : null,
      window_level: voi ? round(voi.level, 2) : null,
      zoom: zoom === null ? null : round(zoom, 4),
      pan: pan ? pan.map((v) => round(v, 3)) : null,
      slice_index: this.sliceIndex(),
    };
  }

  // --- navigation ----------------------------------------------------------------------------------------------

  async scrollTo(index) {
    const n = this.imageIds.length;
    if (!n) return;
    const target = Math.min(Math.max(0, index), n - 1);
    if (target !== this.sliceIndex()) await this.viewport.setImageIdIndex(target);
  }

  scrollBy(delta) {
    return this.scrollTo(this.sliceIndex() + delta);
  }

  setVoi(width, level) {
    const range = csUtils.windowLevel.toLowHighRange(width, level);
    this.viewport.setProperties({ voiRange: range });
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

  /** Go to the lesion's slice and pan so that its centre is in the middle of the viewport. */
  async jumpToLesion() {
    if (!this.lesion) return;
    await this.scrollTo(this.lesion.slice_index);
    const camera = this.viewport.getCamera();
    const target = [this.lesion.x_mm, this.lesion.y_mm, this.lesion.z_mm];
    const n = camera.viewPlaneNormal;
    const d = target.map((v, i) => v - camera.focalPoint[i]);
    const along = d[0] * n[0] + d[1] * n[1] + d[2] * n[2];
    const inPlane = d.map((v, i) => v - along * n[i]);
    this.viewport.setCamera({
      focalPoint: camera.focalPoint.map((v, i) => v + inPlane[i]),
      position: camera.position.map((v, i) => v + inPlane[i]),
    });
    this.viewport.render();
  }

  // --- lesion marker -------------------------------------------------------------------------------------------

  setMarkerVisible(visible) {
    this.markerVisible = visible;
    this.drawMarker();
  }

  drawMarker() {
    const svg = this.svg;
    if (!svg) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const lesion = this.lesion;
    if (!lesion || !this.markerVisible || !this.imageIds.length) return;
    const distance = Math.abs(this.sliceIndex() - lesion.slice_index);
    if (distance > 2) return;
    let centre;
    let pxPerMm = 1;
    try {
      const world = [lesion.x_mm, lesion.y_mm, lesion.z_mm];
      centre = this.viewport.worldToCanvas(world);
      const up = this.viewport.getCamera().viewUp;
      const other = this.viewport.worldToCanvas(world.map((v, i) => v + 10 * up[i]));
      pxPerMm = Math.hypot(other[0] - centre[0], other[1] - centre[1]) / 10 || 1;
    } catch {
      return;
    }
    if (!centre.every(Number.isFinite)) return;
    // Four ticks around the centre, leaving the lesion itself free; faded and dashed on the neighbouring slices.
    const gap = Math.max(12, 9 * pxPerMm);
    const len = 14;
    const g = document.createElementNS(SVG_NS, 'g');
    g.setAttribute('class', distance === 0 ? 'on-slice' : 'near-slice');
    g.setAttribute('data-testid', 'lesion-marker');
    const [cx, cy] = centre;
    for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
      const line = document.createElementNS(SVG_NS, 'line');
      line.setAttribute('x1', cx + dx * gap);
      line.setAttribute('y1', cy + dy * gap);
      line.setAttribute('x2', cx + dx * (gap + len));
      line.setAttribute('y2', cy + dy * (gap + len));
      g.appendChild(line);
    }
    svg.appendChild(g);
  }

  // --- DL overlay ----------------------------------------------------------------------------------------------

  /**
   * Add a labelmap segmentation from raw uint8 voxels [slice][row][column], slices in stack order.
   * Call only after all the stack's images are loaded (the labelmap images copy their geometry).
   */
  addOverlay(itemId, voxels, shape, labels, { visible = true, opacity = 0.5 } = {}) {
    this.removeOverlay();
    const [nSlices, rows, cols] = shape;
    const size = this.imageSize();
    if (nSlices !== this.imageIds.length || !size || size.rows !== rows || size.columns !== cols) {
      throw new Error(
        `overlay shape ${shape.join('x')} does not match the series ` +
          `(${this.imageIds.length}x${size ? size.rows : '?'}x${size ? size.columns : '?'})`,
      );
    }
    if (voxels.length !== nSlices * rows * cols) {
      throw new Error(`overlay has ${voxels.length} voxels, expected ${nSlices * rows * cols}`);
    }
    const segmentationId = `dl-overlay-${itemId}`;
    const labelmaps = imageLoader.createAndCacheDerivedLabelmapImages(this.imageIds);
    const frame = rows * cols;
    labelmaps.forEach((image, k) => {
      const data = image.voxelManager.getScalarData();
      data.set(voxels.subarray(k * frame, (k + 1) * frame));
    });
    this.labelmapImageIds = labelmaps.map((image) => image.imageId);

    // Every label value is declared as a segment: undeclared ones are not toggled with the rest.
    const values = new Set((labels || []).map((l) => Number(l.value)).filter((v) => v > 0 && v < 256));
    for (let i = 0; i < voxels.length; i += 1) {
      if (voxels[i]) values.add(voxels[i]);
    }
    const names = new Map((labels || []).map((l) => [Number(l.value), String(l.name || `label ${l.value}`)]));
    const maxValue = Math.max(0, ...values);
    const colorLUT = [[0, 0, 0, 0]];
    let fallback = 0;
    for (let v = 1; v <= maxValue; v += 1) {
      const known = LABEL_COLORS[(names.get(v) || '').toLowerCase()];
      colorLUT.push(known || FALLBACK_COLORS[fallback++ % FALLBACK_COLORS.length]);
    }
    const segments = {};
    for (const v of [...values].sort((a, b) => a - b)) {
      segments[v] = { segmentIndex: v, label: names.get(v) || `label ${v}`, locked: true, active: false, cachedStats: {} };
    }
    segmentation.addSegmentations([
      {
        segmentationId,
        representation: {
          type: SegmentationRepresentations.Labelmap,
          data: { imageIds: this.labelmapImageIds },
        },
        config: { label: 'DL segmentation', segments },
      },
    ]);
    const lutKey = JSON.stringify(colorLUT);
    if (!lutIndexes.has(lutKey)) lutIndexes.set(lutKey, segmentation.config.color.addColorLUT(colorLUT));
    const colorLUTIndex = lutIndexes.get(lutKey);
    segmentation.addLabelmapRepresentationToViewport(VIEWPORT_ID, [
      { segmentationId, config: { colorLUTOrIndex: colorLUTIndex } },
    ]);
    this.segmentationId = segmentationId;
    this.colorLUTIndex = colorLUTIndex;
    this.setOverlayOpacity(opacity);
    this.setOverlayVisible(visible);
    return [...values];
  }

  setOverlayVisible(visible) {
    this.overlayVisible = !!visible && !!this.segmentationId;
    if (!this.segmentationId) return;
    segmentation.config.visibility.setSegmentationRepresentationVisibility(
      VIEWPORT_ID,
      { segmentationId: this.segmentationId, type: SegmentationRepresentations.Labelmap },
      this.overlayVisible,
    );
    this.viewport.render();
  }

  setOverlayOpacity(opacity) {
    this.overlayOpacity = opacity;
    if (!this.segmentationId) return;
    const style = {
      renderFill: true,
      renderOutline: true,
      fillAlpha: opacity * 0.6,
      outlineOpacity: Math.min(1, opacity * 1.6),
      outlineWidth: 2,
      renderFillInactive: true,
      renderOutlineInactive: true,
      fillAlphaInactive: opacity * 0.6,
      outlineOpacityInactive: Math.min(1, opacity * 1.6),
      outlineWidthInactive: 2,
    };
    segmentation.config.style.setStyle(
      { type: SegmentationRepresentations.Labelmap, viewportId: VIEWPORT_ID, segmentationId: this.segmentationId },
      style,
    );
    this.viewport.render();
  }

  removeOverlay() {
    if (this.segmentationId) {
      try {
        segmentation.removeSegmentationRepresentations(VIEWPORT_ID, { segmentationId: this.segmentationId }, true);
      } catch {
        // already gone
      }
      try {
        segmentation.removeSegmentation(this.segmentationId);
      } catch {
        // already gone
      }
    }
    for (const id of this.labelmapImageIds) this.uncache(id);
    this.labelmapImageIds = [];
    this.segmentationId = null;
    this.colorLUTIndex = undefined;
    this.overlayVisible = false;
  }

  /** Resolve after the next IMAGE_RENDERED (or after timeoutMs). */
  nextRender(timeoutMs = 2000) {
    return new Promise((resolve) => {
      const E = csEnums.Events.IMAGE_RENDERED;
      const done = () => {
        clearTimeout(timer);
        this.element.removeEventListener(E, done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.element.addEventListener(E, done);
      this.viewport.render();
    });
  }
}

function round(value, digits) {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
