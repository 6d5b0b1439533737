import { describe, expect, it } from 'vitest';

import { ApiError, NetworkError } from '../src/api.js';
import { refusalText, submitWithRetry } from '../src/submit.js';

const noSleep = async () => {};

describe('submitWithRetry', () => {
  it('retries network failures and 5xx with the same body, then succeeds', async () => {
    const failures = [new NetworkError(new Error('offline')), new ApiError(503, 'unavailable')];
    const states = [];
    let calls = 0;
    const result = await submitWithRetry({
      send: async () => {
        calls += 1;
        if (failures.length) throw failures.shift();
        return { status: 201, data: { id: 1 } };
      },
      onState: (s, info) => states.push(info ? `${s}:${info.delayMs}` : s),
      sleep: noSleep,
    });
    expect(result).toEqual({ ok: true, status: 201, data: { id: 1 } });
    expect(calls).toBe(3);
    expect(states).toEqual(['pending', 'retry:1000', 'pending', 'retry:2000', 'pending']);
  });

  it('stops at the first refusal (4xx) and reports it', async () => {
    let calls = 0;
    const result = await submitWithRetry({
      send: async () => {
        calls += 1;
        throw new ApiError(409, 'your rating was not stored', ['a different rating exists']);
      },
      sleep: noSleep,
    });
    expect(calls).toBe(1);
    expect(result.ok).toBe(false);
    expect(refusalText(result.error)).toBe('your rating was not stored a different rating exists');
  });

  it('goes quiet when the page has moved on', async () => {
    let current = true;
    const result = await submitWithRetry({
      send: async () => {
        current = false;
        throw new NetworkError(new Error('x'));
      },
      isCurrent: () => current,
      sleep: noSleep,
    });
    expect(result).toEqual({ ok: false, stale: true });
  });

  it('caps the delay at the last step', async () => {
    const delays = [];
    let n = 0;
    await submitWithRetry({
      send: async () => {
        n += 1;
        if (n < 9) throw new ApiError(502, 'bad gateway');
        return { status: 200, data: {} };
      },
      onState: (s, info) => info && delays.push(info.delayMs),
      sleep: noSleep,
    });
    expect(delays).toEqual([1000, 2000, 4000, 8000, 15000, 30000, 30000, 30000]);
  });
});
