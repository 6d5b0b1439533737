// Submit a read with retries: network failures and 5xx are retried with the identical body (same idempotency key);
// anything else is final and reported. Pure of the DOM, so it is unit-tested.

import { ApiError, NetworkError } from './api.js';

export const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];

export function isRetryable(err) {
  return err instanceof NetworkError || (err instanceof ApiError && err.status >= 500);
}

/**
 * @param {object} o
 * @param {() => Promise<{status: number, data: object}>} o.send   one attempt
 * @param {(state: string, info?: object) => void} o.onState       'pending' | 'retry' (info {delayMs, attempt})
 * @param {(ms: number) => Promise<void>} o.sleep
 * @param {() => boolean} o.isCurrent  false once the page moved on (stop quietly)
 * @returns {Promise<{ok: true, status: number, data: object} | {ok: false, error: Error} | {ok: false, stale: true}>}
 */
export async function submitWithRetry({ send, onState = () => {}, sleep, isCurrent = () => true, delays = RETRY_DELAYS_MS }) {
  for (let attempt = 0; ; attempt += 1) {
    onState('pending');
    try {
      const { status, data } = await send();
      if (!isCurrent()) return { ok: false, stale: true };
      return { ok: true, status, data };
    } catch (err) {
      if (!isCurrent()) return { ok: false, stale: true };
      if (!isRetryable(err)) return { ok: false, error: err };
      const delayMs = delays[Math.min(attempt, delays.length - 1)];
      onState('retry', { delayMs, attempt: attempt + 1 });
      await sleep(delayMs);
      if (!isCurrent()) return { ok: false, stale: true };
    }
  }
}

/** The text a refused read shows the reader. */
export function refusalText(err) {
  return [err.detail || err.message, ...(err.errors || [])].filter(Boolean).join(' ');
}
