import { describe, expect, it } from 'vitest';

import { formatDate } from '../src/dom.js';

describe('formatDate', () => {
  it('shows one moment in the server zone, named', () => {
    expect(formatDate('2026-12-31T12:49:56Z', 'UTC')).toBe('31 Dec 2026, 12:49 UTC');
    expect(formatDate('2026-12-31T12:49:56Z', 'Europe/Berlin')).toBe('31 Dec 2026, 13:49 CET');
  });

  it('passes unknown values through and nothing for no value', () => {
    expect(formatDate(null)).toBeNull();
    expect(formatDate('not a date')).toBe('not a date');
  });
});
