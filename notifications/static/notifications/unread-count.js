/**
 * The unread and unseen counts of client.js, exact between the server's counts (docs/client.md,
 * "Unread count"): each count the server sends covers the seqs up to the head_seq it
 * names; the notifications taken above that head are added to it.
 */
export class UnreadCount {
  /**
   * `changed(value)`: the count changed. `field`: which of the server's counts this is
   * ("unread" or "unseen"). `counts(frame)`: whether a new notification adds one (unread:
   * when not read; unseen: always, a new one is above the seen mark).
   */
  constructor(changed, { field = "unread", counts = (frame) => !frame.read } = {}) {
    this.value = null;
    this._base = 0; // seqs up to here are already counted in `value`
    this._countedHead = 0; // the head_seq of the last count the server sent: an older one is stale
    this._recent = []; // counted seqs we accepted above the server's last counted head
    this._changed = changed;
    this._field = field;
    this._counts = counts;
  }

  /** A new socket's `welcome`: its count covers everything up to its head. */
  restart(headSeq, value) {
    this._base = headSeq;
    this._countedHead = headSeq;
    this._recent = [];
    this.set(value);
  }

  /**
   * A frame with the server's count (state, read_state, heartbeat, reply): it covers seqs
   * up to the head_seq it names; add the notifications we accepted above it. Exact even
   * when a change and a publish cross on the wire. A count older than one already taken
   * (a reply that came before the events it covers) is stale: it is skipped.
   */
  counted(frame) {
    const value = frame[this._field];
    if (typeof value !== "number") return;
    if (typeof frame.head_seq !== "number") return this.set(value);
    if (frame.head_seq < this._countedHead) return;
    this._countedHead = frame.head_seq;
    this._recent = this._recent.filter((seq) => seq > frame.head_seq);
    this._base = Math.max(this._base, frame.head_seq);
    this.set(value + this._recent.length);
  }

  /** A notification taken in order: one more if it is new to the server's count. */
  taken(frame) {
    if (frame.seq <= this._base) return;
    this._base = frame.seq;
    if (this._counts(frame)) {
      this._recent.push(frame.seq);
      this.set((this.value ?? 0) + 1);
    }
  }

  /** Seqs up to `seq` are in the server's count now (a replay ended at its head). */
  coveredUpTo(seq) {
    this._base = Math.max(this._base, seq);
  }

  /** The stream started over at `seq` (a `reset`). */
  rebase(seq) {
    this._base = seq;
    this._countedHead = seq;
  }

  set(value) {
    if (typeof value !== "number" || value === this.value) return;
    this.value = Math.max(0, value);
    this._changed(this.value);
  }

  /** For a tab that joins: the count and what it is made of (restore() takes it). */
  snapshot() {
    const f = this._field;
    return { [f]: this.value, [`${f}Base`]: this._base, [`${f}CountedHead`]: this._countedHead, [`${f}Recent`]: this._recent };
  }

  restore(status) {
    const f = this._field;
    this._base = status[`${f}Base`] ?? 0;
    this._countedHead = status[`${f}CountedHead`] ?? 0;
    this._recent = [...(status[`${f}Recent`] ?? [])];
    this.set(status[f]);
  }
}
