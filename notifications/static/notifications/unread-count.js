/**
 * The unread count of client.js, exact between the server's counts (docs/client.md,
 * "Unread count"): each count the server sends covers the seqs up to the head_seq it
 * names; the unread notifications taken above that head are added to it.
 */
export class UnreadCount {
  /** `changed(value)`: the count changed. */
  constructor(changed) {
    this.value = null;
    this._base = 0; // seqs up to here are already counted in `value`
    this._recent = []; // unread seqs we accepted above the server's last counted head
    this._changed = changed;
  }

  /** A new socket's `welcome`: its count covers everything up to its head. */
  restart(headSeq, unread) {
    this._base = headSeq;
    this._recent = [];
    this.set(unread);
  }

  /**
   * A frame with the server's count (read, unread, read_state, heartbeat, reply): it
   * covers seqs up to the head_seq it names; add the unread notifications we accepted
   * above it. Exact even when a read mark and a publish cross on the wire.
   */
  counted(frame) {
    if (typeof frame.unread !== "number") return;
    if (typeof frame.head_seq !== "number") return this.set(frame.unread);
    this._recent = this._recent.filter((seq) => seq > frame.head_seq);
    this._base = Math.max(this._base, frame.head_seq);
    this.set(frame.unread + this._recent.length);
  }

  /** A notification taken in order: one more unread if it is new to the server's count. */
  taken(frame) {
    if (frame.seq <= this._base) return;
    this._base = frame.seq;
    if (!frame.read) {
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
  }

  set(value) {
    if (typeof value !== "number" || value === this.value) return;
    this.value = Math.max(0, value);
    this._changed(this.value);
  }

  /** For a tab that joins: the count and what it is made of (restore() takes it). */
  snapshot() {
    return { unread: this.value, unreadBase: this._base, recentUnread: this._recent };
  }

  restore({ unread, unreadBase, recentUnread }) {
    this._base = unreadBase;
    this._recent = [...recentUnread];
    this.set(unread);
  }
}
