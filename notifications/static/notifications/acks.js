/**
 * Acks of client.js: cumulative `ack {seq: cursor}`, at most one per `delayMs`, or at once
 * when `every` notifications are unacked. Acks only move the server's delivered cursor
 * (nothing waits on them), and each costs the server a frame and a write.
 */
export class AckBatcher {
  /** `cursor()`: the seq to ack up to (null: nothing to ack). `send(seq)`: sends the ack, false if it could not. */
  constructor({ delayMs, every, cursor, send }) {
    this._delayMs = delayMs;
    this._every = every;
    this._cursor = cursor;
    this._send = send;
    this._acked = 0;
    this._timer = null;
  }

  /** A notification was taken: ack now if `every` are unacked, else within `delayMs`. */
  schedule() {
    const cursor = this._cursor();
    if (cursor === null) return;
    if (cursor - this._acked >= this._every) {
      this.flush();
    } else if (!this._timer) {
      this._timer = setTimeout(() => this.flush(), this._delayMs);
    }
  }

  /** Ack up to the cursor now (the end of a replay: the server's unacked window stays small). */
  flush() {
    this.cancel();
    const cursor = this._cursor();
    if (cursor !== null && cursor > this._acked && this._send(cursor)) this._acked = cursor;
  }

  cancel() {
    clearTimeout(this._timer);
    this._timer = null;
  }

  /** The stream starts again below what was acked (a new socket, a reset): ack from `seq` on. */
  lowerTo(seq) {
    this._acked = Math.min(this._acked, seq);
  }
}
