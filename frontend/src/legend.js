// Overlay labels as the server sends them ({value, name, color}): the one source of the drawn and listed colours.

/** The lesion marker's colour: Okabe-Ito yellow, which no overlay label uses. */
export const MARKER_COLOR = [240, 228, 66];
const FALLBACK = [
  [0, 114, 178],
  [204, 121, 167],
  [213, 94, 0],
  [255, 255, 255],
];

function validColor(c) {
  return Array.isArray(c) && c.length >= 3 && c.slice(0, 3).every((v) => Number.isInteger(v) && v >= 0 && v <= 255);
}

/**
 * Normalised legend entries, one per label value 1-255, sorted by value.
 * A label without a valid colour gets a fallback one (never the marker's).
 */
export function legendEntries(labels) {
  const seen = new Set();
  const out = [];
  let fallback = 0;
  for (const label of labels || []) {
    const value = Number(label && label.value);
    if (!Number.isInteger(value) || value < 1 || value > 255 || seen.has(value)) continue;
    seen.add(value);
    const color = validColor(label.color) ? label.color.slice(0, 3).map(Number) : FALLBACK[fallback++ % FALLBACK.length];
    out.push({ value, name: String(label.name || `label ${value}`), color });
  }
  return out.sort((a, b) => a.value - b.value);
}

export function rgbString(color) {
  return color.slice(0, 3).join(',');
}

/** value -> [r, g, b] lookup table (256 entries, null for undeclared values). */
export function colorTable(entries) {
  const table = new Array(256).fill(null);
  for (const e of entries) table[e.value] = e.color;
  return table;
}
