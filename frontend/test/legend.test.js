import { describe, expect, it } from 'vitest';

import { MARKER_COLOR, colorTable, legendEntries, rgbString } from '../src/legend.js';
import { presentValues, sliceRgba } from '../src/overlay.js';

const SERVER_LABELS = [
  { value: 2, name: 'target lesion', color: [230, 159, 0] },
  { value: 1, name: 'liver', color: [0, 158, 115] },
  { value: 3, name: 'other lesion', color: [86, 180, 233] },
];

describe('legendEntries', () => {
  it('keeps exactly the server labels and colours, sorted by value', () => {
    const entries = legendEntries(SERVER_LABELS);
    expect(entries.map((e) => e.name)).toEqual(['liver', 'target lesion', 'other lesion']);
    expect(entries.map((e) => rgbString(e.color))).toEqual(['0,158,115', '230,159,0', '86,180,233']);
  });

  it('drops invalid and duplicate values and gives colourless labels a fallback that is not the marker colour', () => {
    const entries = legendEntries([
      { value: 0, name: 'background' },
      { value: 300, name: 'too big' },
      { value: 'x', name: 'bad' },
      { value: 4, name: 'vessel', color: [999, 0, 0] },
      { value: 4, name: 'duplicate', color: [1, 2, 3] },
    ]);
    expect(entries).toHaveLength(1);
    expect(entries[0].name).toBe('vessel');
    expect(entries[0].color).not.toEqual(MARKER_COLOR);
    expect(entries[0].color.every((v) => v >= 0 && v <= 255)).toBe(true);
  });

  it('never uses the marker colour for a label of the server palette', () => {
    for (const e of legendEntries(SERVER_LABELS)) expect(e.color).not.toEqual(MARKER_COLOR);
  });
});

describe('sliceRgba', () => {
  // 5x5: liver (1) everywhere inside a background frame, a target lesion (2) in the middle.
  const mask = Uint8Array.from([
    0, 0, 0, 0, 0,
    0, 1, 1, 1, 0,
    0, 1, 2, 1, 0,
    0, 1, 1, 1, 0,
    0, 0, 0, 0, 0,
  ]);
  const colors = colorTable(legendEntries(SERVER_LABELS));
  const px = (rgba, r, c) => Array.from(rgba.slice((r * 5 + c) * 4, (r * 5 + c) * 4 + 4));

  it('draws outlines opaque in the label colour and nothing else in outline mode', () => {
    const rgba = sliceRgba(mask, 5, 5, { colors, mode: 'outline' });
    expect(px(rgba, 1, 1)).toEqual([0, 158, 115, 255]); // liver next to background
    expect(px(rgba, 2, 2)).toEqual([230, 159, 0, 255]); // lesion next to liver
    expect(px(rgba, 0, 0)).toEqual([0, 0, 0, 0]);
  });

  it('adds translucent fill inside in fill+outline mode', () => {
    const big = new Uint8Array(49).fill(1);
    const rgba = sliceRgba(big, 7, 7, { colors, mode: 'fill_outline', fillAlpha: 0.2 });
    expect(px(rgba, 3, 3)).toEqual([0, 158, 115, 51]);
    expect(rgba[3]).toBe(255); // the corner is on the edge
    const outline = sliceRgba(big, 7, 7, { colors, mode: 'outline' });
    expect(outline[(3 * 7 + 3) * 4 + 3]).toBe(0);
  });

  it('draws nothing when off and hides hidden labels only', () => {
    expect(sliceRgba(mask, 5, 5, { colors, mode: 'off' }).some((v) => v)).toBe(false);
    const rgba = sliceRgba(mask, 5, 5, { colors, mode: 'outline', hidden: new Set([1]) });
    expect(px(rgba, 1, 1)[3]).toBe(0);
    expect(px(rgba, 2, 2)).toEqual([230, 159, 0, 255]);
  });

  it('lists the label values present in a volume', () => {
    expect([...presentValues(mask)].sort()).toEqual([1, 2]);
  });
});
