import { describe, expect, it } from 'vitest';

import { parseRating } from '../src/rating.js';

const scale = { min: 0, max: 100 };

describe('parseRating', () => {
  it('accepts whole numbers on the scale, with surrounding spaces', () => {
    expect(parseRating('0', scale)).toEqual({ value: 0 });
    expect(parseRating(' 73 ', scale)).toEqual({ value: 73 });
    expect(parseRating('100', scale)).toEqual({ value: 100 });
  });

  it('explains why 150, 12.5, -1 and text are refused', () => {
    expect(parseRating('150', scale).error).toMatch(/off the scale.*0 to 100/);
    expect(parseRating('12.5', scale).error).toMatch(/not a whole number/);
    expect(parseRating('-1', scale).error).toMatch(/off the scale/);
    expect(parseRating('abc', scale).error).toMatch(/whole number from 0 to 100/);
  });

  it('treats an empty field as no answer, not an error', () => {
    expect(parseRating('', scale)).toEqual({});
    expect(parseRating('   ', scale)).toEqual({});
  });

  it('follows the study scale', () => {
    expect(parseRating('5', { min: 1, max: 5 })).toEqual({ value: 5 });
    expect(parseRating('0', { min: 1, max: 5 }).error).toMatch(/1 to 5/);
  });
});
