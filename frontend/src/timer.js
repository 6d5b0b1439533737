// Active reading time of one item: runs from the first displayed image to submit, paused while the tab is hidden,
// and kept across reloads: the running total is saved under the item's key (sessionStorage in the page).

const SAVE_EVERY_MS = 1000;

/** A storage wrapper that never throws (private modes and full quotas refuse writes). */
export function safeStore(storage) {
  return {
    get(key) {
      try {
        const v = Number(storage.getItem(key));
        return Number.isFinite(v) && v > 0 ? v : 0;
      } catch {
        return 0;
      }
    },
    set(key, ms) {
      try {
        storage.setItem(key, String(Math.round(ms)));
      } catch {
        // lost only on a reload
      }
    },
    remove(key) {
      try {
        storage.removeItem(key);
      } catch {
        // nothing to do
      }
    },
  };
}

export class ActiveTimer {
  /**
   * @param {object} options  {key, store (safeStore), now () => ms, doc (document-like: visibilityState, events)}
   */
  constructor({ key = null, store = null, now = () => performance.now(), doc = globalThis.document } = {}) {
    this.key = key;
    this.store = store;
    this.now = now;
    this.doc = doc;
    this.total = key && store ? store.get(key) : 0; // ms of earlier page loads of this item, then of finished spans
    this.resumed = this.total > 0;
    this.since = null;
    this.started = false;
    this.stopped = false;
    this.saver = null;
    this.onVisibility = () => {
      if (this.hidden()) this.pause();
      else this.resume();
    };
    this.onPageHide = () => this.save();
    doc?.addEventListener?.('visibilitychange', this.onVisibility);
    globalThis.addEventListener?.('pagehide', this.onPageHide);
  }

  hidden() {
    return this.doc?.visibilityState === 'hidden';
  }

  start() {
    if (this.started) return;
    this.started = true;
    if (!this.hidden()) this.since = this.now();
    if (this.key && this.store) this.saver = setInterval(() => this.save(), SAVE_EVERY_MS);
  }

  pause() {
    if (this.since !== null) {
      this.total += this.now() - this.since;
      this.since = null;
      this.save();
    }
  }

  resume() {
    if (this.started && !this.stopped && this.since === null && !this.hidden()) this.since = this.now();
  }

  /** Milliseconds so far. */
  ms() {
    return this.total + (this.since === null ? 0 : this.now() - this.since);
  }

  seconds() {
    return this.ms() / 1000;
  }

  save() {
    if (this.key && this.store && this.started) this.store.set(this.key, this.ms());
  }

  /** Freeze the time (at submit) and return the seconds. */
  stop() {
    this.pause();
    this.stopped = true;
    return this.total / 1000;
  }

  /** Undo stop() when a submit was refused and the reader goes on reading. */
  restart() {
    this.stopped = false;
    this.resume();
  }

  /** The read is stored: the saved time is no longer needed. */
  forget() {
    if (this.key && this.store) this.store.remove(this.key);
  }

  dispose() {
    clearInterval(this.saver);
    this.saver = null;
    this.doc?.removeEventListener?.('visibilitychange', this.onVisibility);
    globalThis.removeEventListener?.('pagehide', this.onPageHide);
  }
}
