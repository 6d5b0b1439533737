// The reading page's keyboard map: one table, used by the key handler and the help list alike.

export const KEY_HELP = [
  ['Wheel, ↑/↓', 'slices · PageUp/PageDown: 5 slices · Home/End: first/last'],
  ['Left drag', 'window/level (or the selected measuring tool) · right drag: zoom'],
  ['Middle drag, Shift + left drag', 'pan'],
  ['1–9', 'window presets · f: fit · r: reset'],
  ['j', 'jump to the lesion · m: marker on/off'],
  ['o', 'DL overlay on/off (aided items)'],
  ['l / e / w', 'length caliper / elliptical ROI / window-level tool'],
  ['c', 'cine on/off · x: MPR on/off'],
  ['Enter', 'move to the rating (from the viewer)'],
  ['Tab, Shift+Tab', 'move between the viewer and the panels'],
];

// Slice navigation; on a focused range input (the rating slider) these keys move the rating instead.
const NAVIGATION = {
  ArrowUp: { command: 'scroll-by', arg: -1 },
  ArrowDown: { command: 'scroll-by', arg: 1 },
  PageUp: { command: 'scroll-by', arg: -5 },
  PageDown: { command: 'scroll-by', arg: 5 },
  Home: { command: 'scroll-to', arg: 0 },
  End: { command: 'scroll-to', arg: -1 },
};
const LETTERS = {
  f: 'fit',
  r: 'reset',
  j: 'jump-to-lesion',
  m: 'toggle-marker',
  o: 'toggle-overlay',
  l: 'tool-length',
  e: 'tool-ellipse',
  w: 'tool-wl',
  c: 'toggle-cine',
  x: 'toggle-mpr',
};

/**
 * The command for a key press, or null to let the browser have it.
 * @param {{key: string, ctrlKey?: boolean, metaKey?: boolean, altKey?: boolean}} e
 * @param {{textEntry?: boolean, onRange?: boolean, inViewer?: boolean, presetKeys?: string[]}} ctx
 * @returns {{command: string, arg?: (number|string)} | null}
 */
export function keyCommand(e, ctx = {}) {
  if (e.ctrlKey || e.metaKey || e.altKey || ctx.textEntry) return null;
  if (e.key === 'Tab') return null; // never swallowed: keyboard readers must be able to leave the viewer
  if (e.key === 'Enter') return ctx.inViewer ? { command: 'focus-rating' } : null;
  if (e.key in NAVIGATION) return ctx.onRange ? null : NAVIGATION[e.key];
  const letter = e.key.length === 1 ? e.key.toLowerCase() : null;
  if (letter && LETTERS[letter]) return { command: LETTERS[letter] };
  if (/^[1-9]$/.test(e.key) && (ctx.presetKeys || []).includes(e.key)) return { command: 'preset', arg: e.key };
  return null;
}
