// Active reading time of one item: runs from the first displayed image to submit, paused while the tab is hidden.

export class ActiveTimer {
  constructor() {
    this.total = 0; // ms accumulated in finished running spans
    this.since = null; // performance.now() of the running span, or null when paused/stopped
    this.started = false;
    this.stopped = false;
    this.onVisibility = () => {
      if (document.visibilityState === 'hidden') this.pause();
      else this.resume();
    };
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  start() {
    if (this.started) return;
    this.started = true;
    if (document.visibilityState !== 'hidden') this.since = performance.now();
  }

  pause() {
    if (this.since !== null) {
      this.total += performance.now() - this.since;
      this.since = null;
    }
  }

  resume() {
    if (this.started && !this.stopped && this.since === null && document.visibilityState !== 'hidden') {
      this.since = performance.now();
    }
  }

  /** Seconds so far (float). */
  seconds() {
    const running = this.since === null ? 0 : performance.now() - this.since;
    return (this.total + running) / 1000;
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

  dispose() {
    document.removeEventListener('visibilitychange', this.onVisibility);
  }
}
