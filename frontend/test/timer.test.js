import { describe, expect, it, vi } from 'vitest';

import { ActiveTimer, safeStore } from '../src/timer.js';

function memoryStorage() {
  const data = new Map();
  return { getItem: (k) => (data.has(k) ? data.get(k) : null), setItem: (k, v) => data.set(k, String(v)), removeItem: (k) => data.delete(k) };
}

function fakeDoc() {
  const listeners = {};
  return {
    visibilityState: 'visible',
    addEventListener: (t, f) => (listeners[t] = f),
    removeEventListener: (t) => delete listeners[t],
    fire(t) {
      listeners[t]?.();
    },
  };
}

describe('ActiveTimer', () => {
  it('counts only visible time', () => {
    let now = 0;
    const doc = fakeDoc();
    const t = new ActiveTimer({ now: () => now, doc });
    t.start();
    now = 4000;
    doc.visibilityState = 'hidden';
    doc.fire('visibilitychange');
    now = 60000;
    doc.visibilityState = 'visible';
    doc.fire('visibilitychange');
    now = 61000;
    expect(t.stop()).toBeCloseTo(5, 6);
    t.dispose();
  });

  it('keeps the time across a reload of the same item and forgets it once stored', () => {
    vi.useFakeTimers();
    let now = 0;
    const store = safeStore(memoryStorage());
    const first = new ActiveTimer({ key: 'ra-active:1:7', store, now: () => now, doc: fakeDoc() });
    first.start();
    now = 15000;
    vi.advanceTimersByTime(1000); // the periodic save
    first.dispose(); // the page goes away (reload)

    now = 100000; // the new page: loading time is not reading time
    const second = new ActiveTimer({ key: 'ra-active:1:7', store, now: () => now, doc: fakeDoc() });
    expect(second.resumed).toBe(true);
    second.start();
    now = 102000;
    expect(second.stop()).toBeCloseTo(17, 6);
    second.forget();
    expect(store.get('ra-active:1:7')).toBe(0);
    second.dispose();
    vi.useRealTimers();
  });

  it('restarts after a refused submit', () => {
    let now = 0;
    const t = new ActiveTimer({ now: () => now, doc: fakeDoc() });
    t.start();
    now = 2000;
    t.stop();
    now = 5000; // frozen while the refusal is shown
    t.restart();
    now = 6000;
    expect(t.stop()).toBeCloseTo(3, 6);
  });

  it('survives a storage that throws', () => {
    const broken = { getItem: () => { throw new Error('denied'); }, setItem: () => { throw new Error('quota'); }, removeItem: () => { throw new Error('x'); } };
    const store = safeStore(broken);
    expect(store.get('k')).toBe(0);
    expect(() => store.set('k', 5)).not.toThrow();
    expect(() => store.remove('k')).not.toThrow();
  });
});
