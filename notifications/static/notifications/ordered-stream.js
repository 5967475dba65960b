/**
 * The notifications of one user in seq order, each once: the rule of docs/protocol.md
 * ("Order and gaps") that client.js keeps, and the cursor it keeps it with.
 *
 * No socket and no frame but `notification` is known here: stream-sync.js hands in each
 * notification frame, and says when the server has sent everything up to a seq
 * (`synced`) or starts over (`reset`).
 */

/**
 * `cursor` is the highest seq taken with nothing missing below it. A seq at or below
 * it, or one already held, is a duplicate; one past a gap is held until the gap is
 * filled, or until the server says it has sent everything up to it (what it skipped
 * has expired).
 */
export class OrderedStream {
  /**
   * `cursor`: where to start (null: at the server's head). `store`: a StoredCursor, written
   * on every advance. `take(frame)`: a notification in order, once, the cursor already on
   * it. `gap()`: a frame was held past a gap; the caller asks for a replay.
   */
  constructor({ cursor, store, take, gap }) {
    this.cursor = cursor;
    this.duplicates = 0; // frames dropped because their seq was already held (for tests and debugging)
    this.lastSeen = null; // seq of the last notification frame on this socket
    this._held = new Map(); // seq -> frame received past a gap, held until the gap is filled
    this._store = store;
    this._take = take;
    this._gap = gap;
  }

  receive(frame) {
    const seq = frame.seq;
    this.lastSeen = seq;
    if (this.cursor !== null && (seq <= this.cursor || this._held.has(seq))) {
      this.duplicates += 1;
      return;
    }
    if (this.cursor === null || seq === this.cursor + 1) {
      this._accept(frame);
      this._drain();
      return;
    }
    // A gap: hold this one and replay from the cursor. The replay fills the gap;
    // a seq it skips has expired, and `synced` says so by passing it.
    this._held.set(seq, frame);
    this._gap();
  }

  /** The server has sent everything up to `seq` on this socket: what we hold below it can go out. */
  settleUpTo(seq) {
    for (const held of [...this._held.keys()].sort((a, b) => a - b)) {
      if (held > seq) break;
      const frame = this._held.get(held);
      this._held.delete(held);
      if (held > this.cursor) this._accept(frame);
    }
    if (seq > (this.cursor ?? 0)) this.advanceTo(seq);
    this._drain();
  }

  /** Move the cursor up to `seq` (never down), and store it. */
  advanceTo(seq) {
    if (this.cursor !== null && seq <= this.cursor) return;
    this.cursor = seq;
    this._store.save(seq);
  }

  /** Start over at `seq`, below the cursor too: what is held is forgotten. */
  reset(seq) {
    this.cursor = seq;
    this._store.save(seq);
    this._held.clear();
  }

  /** A new socket: its replay brings again whatever is held. */
  forgetHeld() {
    this._held.clear();
    this.lastSeen = null;
  }

  _accept(frame) {
    this.advanceTo(frame.seq);
    this._take(frame);
  }

  _drain() {
    while (this._held.has(this.cursor + 1)) {
      const frame = this._held.get(this.cursor + 1);
      this._held.delete(frame.seq);
      this._accept(frame);
    }
  }
}

/** The cursor in localStorage, one key per user, so that a reload resumes where the page was. */
export class StoredCursor {
  /** `storage`: anything with getItem/setItem (default: localStorage when usable); no `userId`: nothing is stored. */
  constructor(storage, userId) {
    this._storage = storage || localStorageOrNull();
    this._key = userId == null ? null : `notifications:cursor:${userId}`;
  }

  load() {
    if (!this._key || !this._storage) return null;
    const value = Number.parseInt(this._storage.getItem(this._key) ?? "", 10);
    return Number.isSafeInteger(value) && value >= 0 ? value : null;
  }

  save(cursor) {
    if (!this._key || !this._storage) return;
    try {
      this._storage.setItem(this._key, String(cursor));
    } catch {
      /* storage full or denied: the in-memory cursor still works */
    }
  }
}

function localStorageOrNull() {
  try {
    const s = globalThis.localStorage;
    const probe = "__notify_probe__";
    s.setItem(probe, "1");
    s.removeItem(probe);
    return s;
  } catch {
    return null;
  }
}
