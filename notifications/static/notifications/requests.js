/**
 * The requests of client.js that wait for an answer: each frame goes out with a fresh
 * `ref`, and the `reply` (or `error`, `pong`) with that ref settles it.
 */
export class PendingRequests {
  /** `send(frame)`: puts a frame on the socket, false if there is none. `timeoutMs`: how long a request waits. */
  constructor({ send, timeoutMs }) {
    this._send = send;
    this._timeoutMs = timeoutMs;
    this._ref = 0;
    this._refPrefix = `c${Math.random().toString(36).slice(2, 7)}-`; // tabs share a socket: refs must not collide
    this._pending = new Map();
  }

  /** Send a frame with a ref; resolves with the `reply`, rejects on an error reply, timeout or disconnect. */
  request(frame) {
    const ref = `${this._refPrefix}${++this._ref}`;
    return new Promise((resolve, reject) => {
      if (!this._send({ ...frame, ref })) {
        reject(new Error("not connected"));
        return;
      }
      const timer = setTimeout(() => this.settle(ref, new Error("timed out")), this._timeoutMs);
      this._pending.set(ref, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  /** Resolve the request `ref` with `reply`, or reject it with `error` (an Error, or an error frame). */
  settle(ref, error, reply) {
    const pending = this._pending.get(ref);
    if (!pending) return;
    this._pending.delete(ref);
    if (error) pending.reject(error instanceof Error ? error : Object.assign(new Error(error.message || error.error || "failed"), { frame: error }));
    else pending.resolve(reply);
  }

  /** The socket is gone: no answer will come. */
  rejectAll() {
    for (const [, pending] of this._pending) pending.reject(new Error("disconnected"));
    this._pending.clear();
  }

  isPending(ref) {
    return this._pending.has(ref);
  }

  /** Whether `ref` is one of this client's (another tab's requests share the socket). */
  isOurs(ref) {
    return String(ref).startsWith(this._refPrefix);
  }
}
