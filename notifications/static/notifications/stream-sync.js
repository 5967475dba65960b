/**
 * The frames from the server, and where they leave client.js in the user's stream,
 * across sockets (docs/client.md, "How it keeps its promise"): the replays that keep
 * it whole (`welcome`, `resume`, `synced`, `reset`) around the ordered stream
 * (ordered-stream.js), the acks of what it took, the unread and unseen counts each frame
 * moves, the inbox state each `state` event changes (inbox-state.js), and the answers to requests.
 */

import { AckBatcher } from "./acks.js";
import { OrderedStream } from "./ordered-stream.js";
import { State } from "./states.js";
import { Role } from "./tab-relay.js";

/** One per client: what each frame from the server does to it, on its own socket or, relayed, the leader's. */
export class StreamSync {
  /**
   * `cursor`, `store`: where the stream starts and where its cursor is kept. `unread`,
   * `unseen`, `inbox`, `requests`: the client's two UnreadCounts, its InboxState and its PendingRequests. `ackDelayMs`, `ackEvery`: the
   * acks' batching. `host`: the client, as `send(frame)` (false: not sent), `setState(state)`,
   * `emit(event, payload)`, `socketWelcomed()` (a socket reached `welcome`), and `tabs()`: its
   * TabRelay while it shares a socket with its other tabs, else null.
   */
  constructor({ cursor, store, unread, unseen, inbox, requests, ackDelayMs, ackEvery, host }) {
    this.welcomed = false; // this socket (or the leader's) has had its `welcome`
    this.connections = 0; // sockets that reached `welcome`
    this.heartbeatS = 25; // the server sends a frame at least this often (from `welcome`)
    this._syncing = false; // a replay we asked for (connect with since, resume) is in progress
    this._synced = 0; // notifications accepted during that replay
    this._openingReplay = false; // the replay under way is the one a socket's opening asked for (since=)
    this._sinceSynced = 0; // notifications accepted since the last `synced`
    this._ownReplay = false; // a follower behind the leader: its own resume is on the way
    this._lastSynced = null; // ...and the last `synced` seen since (it answers that resume once the reply comes)
    this._host = host;
    this._counts = [unread, unseen];
    this._inbox = inbox;
    this._requests = requests;
    this._stream = new OrderedStream({ cursor, store, take: (frame) => this._take(frame), gap: () => this.resume() });
    // The leader acks for every tab: they are all sent the same frames, so a follower's
    // cursor is never ahead of the leader's, and its acks would only cost the server frames.
    this._acks = new AckBatcher({
      delayMs: ackDelayMs,
      every: ackEvery,
      cursor: () => (this._role() === Role.FOLLOWER ? null : this.cursor),
      send: (seq) => host.send({ type: "ack", seq }),
    });
  }

  get cursor() {
    return this._stream.cursor;
  }

  get duplicates() {
    return this._stream.duplicates;
  }

  /** A message from the socket (this tab's or, relayed, the leader's): a frame, or a `batch` of them. */
  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "batch") {
      // Notifications the server sent together (a replay page, or a burst this socket was behind on).
      for (const inner of frame.frames) this._onFrame(inner);
      return;
    }
    this._onFrame(frame);
  }

  /** Ask the server to replay from the cursor (a gap, a heartbeat ahead of it). */
  resume() {
    if (!this.welcomed || this.cursor === null) return;
    if (this._role() === Role.FOLLOWER) return this._followerResume();
    if (this._syncing) return;
    this._startReplay();
    this._host.send({ type: "resume", since: this.cursor });
  }

  /** A socket opens (this tab's or the leader's): with since, a replay follows its welcome. */
  opening() {
    this.forget();
    this._syncing = this.cursor !== null;
    this._openingReplay = this._syncing;
  }

  /** What this client knew through its last socket: a new socket brings it again. */
  forget() {
    this.welcomed = false;
    this._syncing = false;
    this._synced = 0;
    this._sinceSynced = 0;
    this._openingReplay = false;
    this._ownReplay = false;
    this._lastSynced = null;
    this._stream.forgetHeld();
  }

  closed() {
    this.welcomed = false;
    this._syncing = false;
    this._acks.cancel();
  }

  /** A follower that joins a leader whose socket is up: as if it had had the welcome itself. */
  joined(status) {
    if (this.welcomed) return; // the relayed welcome came first
    this.welcomed = true;
    this.heartbeatS = status.heartbeatS;
    for (const count of this._counts) count.restore(status);
    if (this.cursor === null && status.cursor !== null) this._stream.advanceTo(status.cursor);
    if (this._behindLeader() || status.state === State.SYNCING) this.resume();
    else this._host.setState(status.state);
  }

  /** For a tab that joins this leader: where the stream stands. */
  status() {
    const counts = Object.assign({}, ...this._counts.map((count) => count.snapshot()));
    return { welcomed: this.welcomed, cursor: this.cursor, heartbeatS: this.heartbeatS, ...counts };
  }

  _onFrame(frame) {
    switch (frame.type) {
      case "welcome":
        return this._onWelcome(frame);
      case "notification":
      case "state":
        // A change of inbox state has its seq in the same stream: the same order, gaps and duplicates.
        return this._stream.receive(frame);
      case "synced":
        return this._onSynced(frame);
      case "reset":
        return this._onReset(frame);
      case "read_state":
        // Sent before a replay we asked for: which of the seqs we hold are unread now.
        this._counted(frame);
        return this._host.emit("read_state", frame);
      case "heartbeat":
        this._counted(frame);
        if (this.cursor !== null && frame.head_seq > this.cursor) this.resume();
        return this._host.emit("heartbeat", frame);
      case "reply":
        this._counted(frame);
        return this._requests.settle(frame.ref, frame.ok ? null : frame, frame);
      case "error":
        if (frame.ref !== undefined && this._requests.isPending(frame.ref)) return this._requests.settle(frame.ref, frame, frame);
        if (frame.ref !== undefined && !this._requests.isOurs(frame.ref)) return undefined; // another tab's
        return this._host.emit("error", frame);
      case "pong":
        return frame.ref === undefined ? undefined : this._requests.settle(frame.ref, null, frame);
      default:
        return undefined; // frame types of a later protocol
    }
  }

  _onWelcome(frame) {
    this.welcomed = true;
    this.heartbeatS = frame.heartbeat_s || this.heartbeatS;
    this.connections += 1;
    this._host.socketWelcomed();
    this._acks.lowerTo(this.cursor ?? frame.head_seq);
    this._counts[0].restart(frame.head_seq, frame.unread);
    this._counts[1].restart(frame.head_seq, frame.unseen);
    this._host.emit("welcome", { ...frame, reconnect: this.connections > 1 });
    if (this.cursor === null) {
      // Connected without since: the server starts us at its head.
      this._stream.advanceTo(frame.head_seq);
      this._host.setState(State.LIVE);
    } else {
      this._host.setState(State.SYNCING);
    }
  }

  /** A notification or a `state` event in order, once (from the ordered stream, its cursor already on it). */
  _take(frame) {
    if (frame.type === "state") this._changed(frame);
    else this._notification(frame);
    this._acks.schedule();
  }

  _notification(frame) {
    for (const count of this._counts) count.taken(frame);
    if (this._syncing) this._synced += 1;
    this._sinceSynced += 1;
    const { item, replaced } = this._inbox.take(frame);
    this._host.emit("notification", frame);
    // A snooze that woke: the notification is back as new, at a new seq.
    if (replaced) this._host.emit("change", { op: "wake", seq: frame.seq, frame, changed: [item], removed: [], unknown: [], replaced });
  }

  /** A change of inbox state, made on some device of the user (this one included). */
  _changed(frame) {
    this._counted(frame);
    const result = this._inbox.apply(frame);
    this._host.emit("change", { op: frame.op, seq: frame.seq, frame, ...result });
    // The events of protocol versions before `state`, for pages written to them.
    if (frame.op === "read" || frame.op === "unread") this._host.emit(frame.op, legacyEvent(frame, result));
  }

  _counted(frame) {
    for (const count of this._counts) count.counted(frame);
  }

  /** `answered`: a follower's own resume was answered, and this was the last `synced` before the answer. */
  _onSynced(frame, answered = false) {
    if (!answered && this._behindLeader()) {
      // The leader's replay began past this tab's cursor: it cannot close this tab's gap.
      if (this._ownReplay) this._lastSynced = frame;
      else this.resume();
      return;
    }
    if (frame.more) {
      // A page ends at the last seq it carried; ask again from there.
      if (this._stream.lastSeen !== null) this._stream.settleUpTo(this._stream.lastSeen);
      if (this._role() === Role.FOLLOWER) this.resume();
      else this._host.send({ type: "resume", since: this.cursor });
      return;
    }
    // Seqs up to the head that the replay skipped have expired: the head is ours.
    this._stream.settleUpTo(frame.head_seq);
    for (const count of this._counts) count.coveredUpTo(frame.head_seq);
    // A replay the server started itself (it saw a gap) looks like live pushes on
    // the wire: count what it brought that was new, at most what it replayed.
    const replayed = this._syncing ? this._synced : Math.min(frame.replayed, this._sinceSynced);
    this._sinceSynced = 0;
    const resumed = this._syncing;
    const reconnect = this.connections > 1;
    // What a lost socket missed: the replay of a socket opened again. A resume on a live socket
    // (a heartbeat ahead of the cursor: a publish this process was not pushed) is no outage.
    const outage = reconnect && this._openingReplay;
    this._syncing = false;
    this._synced = 0;
    this._openingReplay = false;
    this._acks.flush();
    this._host.setState(State.LIVE);
    this._host.emit("synced", { head_seq: frame.head_seq, replayed, resumed, reconnect, outage });
  }

  _onReset(frame) {
    // The cursor is older than retention (or ahead of the server): start over from the head.
    this._stream.reset(frame.head_seq);
    this._acks.lowerTo(frame.head_seq);
    for (const count of this._counts) count.rebase(frame.head_seq);
    this._syncing = false;
    this._synced = 0;
    this._openingReplay = false;
    this._host.setState(State.LIVE);
    this._host.emit("reset", frame);
  }

  _startReplay() {
    this._syncing = true;
    this._synced = 0;
    this._host.setState(State.SYNCING);
  }

  /** A follower whose cursor is below the leader's: the leader's replays begin past it. */
  _behindLeader() {
    const tabs = this._host.tabs();
    return tabs?.role === Role.FOLLOWER && this.cursor !== null && tabs.leaderCursor !== null && this.cursor < tabs.leaderCursor;
  }

  _followerResume() {
    if (!this._syncing) this._startReplay();
    // Not behind the leader: it meets the same gap, and its replay reaches this tab too.
    if (!this._behindLeader() || this._ownReplay) return;
    // Behind it (this page was rendered before the leader's last frames): a replay from this
    // tab's cursor, with a ref, whose reply says the replay has been sent.
    this._ownReplay = true;
    this._lastSynced = null;
    this._requests.request({ type: "resume", since: this.cursor }).then(
      () => this._ownReplayAnswered(),
      () => {
        this._ownReplay = false; // the next gap, heartbeat or synced asks again
      },
    );
  }

  _ownReplayAnswered() {
    const synced = this._lastSynced;
    this._ownReplay = false;
    this._lastSynced = null;
    // Nothing left to do if the leader's own frames caught this tab up meanwhile, or a reset answered.
    if (this._syncing && synced) this._onSynced(synced, true);
  }

  _role() {
    return this._host.tabs()?.role ?? Role.SOLO;
  }
}

/** `read` {ids} or {up_to_seq} (everything up to it), `unread` {ids}: as the `read`/`unread` frames before `state` said it. */
function legacyEvent(frame, result) {
  const counts = { unread: frame.unread, head_seq: frame.head_seq, seq: frame.seq };
  if (Array.isArray(frame.ids)) return { ids: frame.ids, ...counts };
  const f = frame.filter || {};
  if (f.topic == null && f.kind == null && !f.archived) return { up_to_seq: frame.up_to_seq, ...counts };
  return { ids: result.changed.map((item) => item.id), ...counts };
}
