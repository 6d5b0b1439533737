import { describe, expect, it } from 'vitest';

import { edgeLabels, nearestSlice, orientationLabel } from '../src/orientation.js';

describe('orientation letters (LPS)', () => {
  it('labels the axes', () => {
    expect(orientationLabel([1, 0, 0])).toBe('L');
    expect(orientationLabel([-1, 0, 0])).toBe('R');
    expect(orientationLabel([0, 1, 0])).toBe('P');
    expect(orientationLabel([0, -1, 0])).toBe('A');
    expect(orientationLabel([0, 0, 1])).toBe('S');
    expect(orientationLabel([0, 0, -1])).toBe('I');
    expect(orientationLabel([0, 0, 0])).toBe('');
  });

  it('names obliques by their strongest axes first', () => {
    expect(orientationLabel([0.8, 0.6, 0])).toBe('LP');
    expect(orientationLabel([0.2, -0.9, 0.1])).toBe('A');
  });

  it('gives the radiological axial view R on the left and A on top', () => {
    // screen right = patient left (+x), screen down = posterior (+y)
    expect(edgeLabels([1, 0, 0], [0, 1, 0])).toEqual({ left: 'R', right: 'L', top: 'A', bottom: 'P' });
    // coronal: screen down = inferior
    expect(edgeLabels([1, 0, 0], [0, 0, -1])).toEqual({ left: 'R', right: 'L', top: 'S', bottom: 'I' });
  });
});

describe('nearestSlice', () => {
  it('finds the slice nearest a position, for either slice order', () => {
    expect(nearestSlice([0, 2.5, 5, 7.5], 6.4)).toBe(3);
    expect(nearestSlice([10, 5, 0, -5], 4)).toBe(1);
    expect(nearestSlice([0, 5], 100)).toBe(1);
  });
});
