/**
 * The wait of client.js before it opens a socket again (docs/client.md, "Backoff").
 */

/**
 * Exponential backoff with full jitter: a random wait in [minMs, min(max, base * 2^attempt)).
 * Uniform from the first retry on, with no pile at minMs: clients cut off together
 * (a server draining with 1012, a network blip) come back spread out.
 */
export function backoffDelay({ minMs, baseMs, maxMs }, attempt) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return minMs + Math.random() * Math.max(0, ceiling - minMs);
}

/** One wait at a time: `tick(seconds left)` at once and as the seconds pass, `done()` at its end. */
export class RetryCountdown {
  constructor({ tick, done }) {
    this._tick = tick;
    this._done = done;
    this._timer = null;
    this._interval = null;
  }

  /** Wait `delayMs`, in place of any wait under way. */
  start(delayMs) {
    const due = Date.now() + delayMs;
    const tick = () => this._tick(Math.max(0, Math.ceil((due - Date.now()) / 1000)));
    this.cancel();
    tick();
    this._interval = setInterval(tick, 200);
    this._timer = setTimeout(() => {
      this.cancel();
      this._done();
    }, delayMs);
  }

  cancel() {
    clearTimeout(this._timer);
    clearInterval(this._interval);
    this._timer = this._interval = null;
  }
}
