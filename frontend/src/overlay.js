// The DL labelmap overlay, drawn by the page itself on a 2D canvas over the viewport: per slice, an RGBA raster of
// the labels (fill and/or a full-opacity outline in exactly the server's colours), cached, and blitted with the
// image-to-canvas transform of the current camera. Drawing one cached bitmap per slice costs about what the CT
// slice itself costs, where Cornerstone's labelmap representation made every scroll 3-8x slower in software GL.

export const OVERLAY_MODES = ['fill_outline', 'outline', 'off'];

/**
 * RGBA raster of one slice. `mask` holds rows*cols label values; `colors` is a 256-entry table of [r,g,b] or null;
 * `hidden` a Set of hidden label values. An outline pixel is a label pixel with a 4-neighbour of a lower value
 * (background, or the liver around a lesion) or at the image edge; it is drawn opaque, fill pixels at `fillAlpha`.
 * @returns {Uint8ClampedArray} rows*cols*4
 */
export function sliceRgba(mask, rows, cols, { colors, hidden = new Set(), mode = 'outline', fillAlpha = 0.3 }) {
  const out = new Uint8ClampedArray(rows * cols * 4);
  if (mode === 'off') return out;
  const fill = mode === 'fill_outline';
  const alpha = Math.round(Math.min(1, Math.max(0, fillAlpha)) * 255);
  for (let r = 0; r < rows; r += 1) {
    const row = r * cols;
    for (let c = 0; c < cols; c += 1) {
      const v = mask[row + c];
      if (!v || hidden.has(v)) continue;
      const color = colors[v];
      if (!color) continue;
      const edge =
        c === 0 ||
        c === cols - 1 ||
        r === 0 ||
        r === rows - 1 ||
        mask[row + c - 1] < v ||
        mask[row + c + 1] < v ||
        mask[row - cols + c] < v ||
        mask[row + cols + c] < v;
      if (!edge && !fill) continue;
      const o = (row + c) * 4;
      out[o] = color[0];
      out[o + 1] = color[1];
      out[o + 2] = color[2];
      out[o + 3] = edge ? 255 : alpha;
    }
  }
  return out;
}

/** Label values present in a volume (for the legend: a label the case lacks is still listed, marked absent). */
export function presentValues(voxels) {
  const seen = new Set();
  for (let i = 0; i < voxels.length; i += 1) if (voxels[i]) seen.add(voxels[i]);
  return seen;
}

export class LabelmapOverlay {
  /**
   * @param {HTMLCanvasElement} canvas  laid over the viewport element, same CSS box
   * @param {Uint8Array} voxels  [slice][row][column] in stack order
   * @param {number[]} shape  [slices, rows, columns]
   */
  constructor(canvas, voxels, shape, colors) {
    this.canvas = canvas;
    this.voxels = voxels;
    [this.nSlices, this.rows, this.cols] = shape;
    this.colors = colors;
    this.mode = 'outline';
    this.hidden = new Set();
    this.opacity = 0.5;
    this.cache = new Map();
  }

  configure({ mode, hidden, opacity }) {
    if (mode !== undefined) this.mode = mode;
    if (hidden !== undefined) this.hidden = new Set(hidden);
    if (opacity !== undefined) this.opacity = opacity;
    this.cache.clear();
  }

  get visible() {
    return this.mode !== 'off';
  }

  bitmap(k) {
    let bmp = this.cache.get(k);
    if (bmp) return bmp;
    const frame = this.rows * this.cols;
    const rgba = sliceRgba(this.voxels.subarray(k * frame, (k + 1) * frame), this.rows, this.cols, {
      colors: this.colors,
      hidden: this.hidden,
      mode: this.mode,
      fillAlpha: this.opacity * 0.6,
    });
    bmp = document.createElement('canvas');
    bmp.width = this.cols;
    bmp.height = this.rows;
    bmp.getContext('2d').putImageData(new ImageData(rgba, this.cols, this.rows), 0, 0);
    this.cache.set(k, bmp);
    return bmp;
  }

  /**
   * Draw slice k with the image->canvas affine map [a, b, c, d, e, f] (CSS pixels; image pixel (i, j) centre at
   * i, j), as returned by SeriesViewport.imageToCanvasTransform().
   */
  draw(k, transform) {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * dpr);
    const hgt = Math.round(canvas.clientHeight * dpr);
    if (canvas.width !== w || canvas.height !== hgt) {
      canvas.width = w;
      canvas.height = hgt;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    if (!this.visible || !transform || k < 0 || k >= this.nSlices) return;
    const [a, b, c, d, e, f] = transform;
    // Source pixel (i, j) covers [i, i+1): its centre is image coordinate i, hence the half-pixel shift.
    ctx.setTransform(a * dpr, b * dpr, c * dpr, d * dpr, (e - 0.5 * a - 0.5 * c) * dpr, (f - 0.5 * b - 0.5 * d) * dpr);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.bitmap(k), 0, 0);
  }

  clear() {
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.cache.clear();
  }
}
