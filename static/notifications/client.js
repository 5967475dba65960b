/**
 * Browser client for the notification service, WebSocket protocol v1.
 *
 * One ES module, no build step, no dependency. It keeps a cursor (the highest
 * seq it holds with nothing missing below it), so that whatever happens to the
 * socket every notification is handed to `on("notification")` once, in seq
 * order: it resumes from the cursor on every reconnect, asks again on a gap,
 * drops duplicates, acks in batches, and keeps the unread count in step with
 * every other device of the user. The tabs of one user share one socket: one
 * tab leads and relays its frames to the others (tabs.js). API: docs/client.md.
 *
 *   import { NotificationClient } from "/static/notifications/client.js";
 *   const client = new NotificationClient({ userId: 7, since: 41 });
 *   client.on("notification", (n) => show(n));   // before connect: nothing is missed
 *   client.on("state", ({ state, retryIn }) => indicator(state, retryIn));
 *   client.connect();
 */

import { TabGroup, tabsSupported } from "./tabs.js";

export const PROTOCOL_VERSION = 1;

/** Connection states, in the order a healthy connection goes through them. */
export const State = Object.freeze({
  CONNECTING: "connecting", // opening the socket, or waiting for `welcome`
  SYNCING: "syncing", // connected, replaying what was missed
  LIVE: "live", // connected and caught up
  OFFLINE: "offline", // no socket: retrying after `retryIn` s, or waiting (network down, logged out, closed)
});

/** Who holds the socket: this client alone, this tab for every tab of the user, or another tab. */
export const Role = Object.freeze({ SOLO: "solo", LEADER: "leader", FOLLOWER: "follower" });

const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_RATE_LIMITED = 4429;
const NO_RETRY = new Set([CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN]);

const DEFAULTS = Object.freeze({
  url: null, // default: ws(s)://<this host>/ws/notifications/
  userId: null, // keys the stored cursor; without it nothing is stored
  since: null, // the initial state's head_seq; default: the stored cursor
  storage: null, // default: window.localStorage when usable
  backoff: { minMs: 250, baseMs: 1000, maxMs: 30000 },
  rateLimitedMs: 5000, // the least wait after close 4429
  ackDelayMs: 1000, // acks are cumulative: one per second at most (each costs the server a frame and a write)
  ackEvery: 100, // ...or sooner when this many are unacked
  requestTimeoutMs: 10000,
  connectTimeoutMs: 10000,
  shareAcrossTabs: null, // one socket for every tab of the user; default: on when userId is set and no WebSocket is injected
  WebSocket: null, // default: globalThis.WebSocket (tests may inject one)
});

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

function defaultUrl() {
  const { protocol, host } = globalThis.location;
  return `${protocol === "https:" ? "wss:" : "ws:"}//${host}/ws/notifications/`;
}

export class NotificationClient {
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
    this.url = this.options.url || defaultUrl();
    this.storage = this.options.storage || localStorageOrNull();
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    this.handlers = new Map();
    const share = this.options.shareAcrossTabs ?? !this.options.WebSocket;
    this._share = Boolean(share) && this.options.userId != null && tabsSupported();

    this.state = State.OFFLINE;
    this.role = Role.SOLO;
    this.cursor = this.options.since ?? this._loadCursor();
    this.unread = null;
    this.retryIn = null; // seconds until the next attempt while a reconnect is scheduled
    this.attempt = 0;
    this.connections = 0; // sockets that reached `welcome`
    this.duplicates = 0; // frames dropped because their seq was already held (for tests and debugging)

    this._ws = null;
    this._welcomed = false;
    this._stopped = true;
    this._syncing = false; // a replay we asked for (connect with since, resume) is in progress
    this._synced = 0; // notifications accepted during that replay
    this._sinceSynced = 0; // notifications accepted since the last `synced`
    this._ahead = new Map(); // seq -> frame received past a gap, held until the gap is filled
    this._lastSeen = null; // seq of the last notification frame on this socket
    this._unreadBase = 0; // seqs up to here are already counted in `unread`
    this._recentUnread = []; // unread seqs we accepted above the server's last counted head
    this._acked = 0;
    this._ackTimer = null;
    this._retryTimer = null;
    this._countdownTimer = null;
    this._watchdog = null;
    this._lastFrameAt = 0;
    this._heartbeatS = 25;
    this._ref = 0;
    this._refPrefix = `c${Math.random().toString(36).slice(2, 7)}-`; // tabs share a socket: refs must not collide
    this._pending = new Map();
    this._stateReason = null;
    this._tabs = null;
    this._leaderCursor = null; // a follower: the leader's cursor before the frame being relayed
    this._ownResume = false; // a follower behind the leader: its own resume is on the way
    this._lastSynced = null; // ...and the last `synced` seen since (it answers that resume once the reply comes)
    this._onOnline = () => this.reconnectNow();
    this._onOffline = () => this._drop("network offline");
    this._onVisible = () => {
      if (globalThis.document?.visibilityState === "visible" && !this._ws && !this._stopped && this.state === State.OFFLINE) this.reconnectNow();
    };
  }

  // --- events ------------------------------------------------------------------------

  /** Install a handler; returns a function that removes it. Install before connect(). */
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.handlers.get(event)?.delete(fn);
  }

  _emit(event, payload) {
    for (const fn of this.handlers.get(event) || []) {
      try {
        fn(payload, this);
      } catch (e) {
        console.error(`notification client: "${event}" handler failed`, e);
      }
    }
  }

  _setState(state, extra = {}) {
    const retryIn = extra.retryIn ?? null;
    if (state === this.state && retryIn === this.retryIn) return;
    this.state = state;
    this.retryIn = retryIn;
    this._stateReason = extra.reason ?? null;
    const payload = { state, retryIn, attempt: this.attempt, reason: this._stateReason };
    // The socket's own states; a follower works out syncing and live from the frames themselves.
    if (this.role === Role.LEADER && (state === State.CONNECTING || state === State.OFFLINE)) this._tabs.post({ k: "socket", ...payload });
    this._emit("state", payload);
  }

  // --- lifecycle -----------------------------------------------------------------------

  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    globalThis.addEventListener?.("online", this._onOnline);
    globalThis.addEventListener?.("offline", this._onOffline);
    globalThis.document?.addEventListener?.("visibilitychange", this._onVisible);
    if (this._share) this._joinTabs();
    else this._open();
    return this;
  }

  /** Close for good (no reconnect) until connect() is called again. */
  close() {
    this._stopped = true;
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.removeEventListener?.("offline", this._onOffline);
    globalThis.document?.removeEventListener?.("visibilitychange", this._onVisible);
    this._clearRetry();
    this._leaveTabs();
    this._drop("closed by the page");
  }

  /** Skip the backoff wait (the network came back, the user clicked "retry"). */
  reconnectNow() {
    if (this._stopped) return;
    if (this.role === Role.FOLLOWER) {
      this._tabs.post({ k: "reconnect" }, this._tabs.leader);
      return;
    }
    if (this._ws) return;
    this.attempt = 0;
    this._clearRetry();
    this._open();
  }

  _open() {
    if (globalThis.navigator && globalThis.navigator.onLine === false) {
      this._setState(State.OFFLINE, { reason: "network offline" });
      return; // the `online` event brings us back
    }
    const url = new URL(this.url, globalThis.location?.href);
    if (this.cursor !== null) url.searchParams.set("since", String(this.cursor));
    url.searchParams.set("batch", "1"); // we read `batch` frames: several notifications in one
    this._welcomed = false;
    this._syncing = this.cursor !== null;
    this._synced = 0;
    this._sinceSynced = 0;
    this._ahead.clear();
    this._lastSeen = null;
    this._setState(State.CONNECTING);
    if (this.role === Role.LEADER) this._tabs.post({ k: "opening" });
    let ws;
    try {
      ws = new this.WebSocket(url.toString());
    } catch (e) {
      console.error("notification client: cannot open the socket", e);
      this._scheduleReconnect(1006);
      return;
    }
    this._ws = ws;
    this._lastFrameAt = Date.now();
    ws.onmessage = (event) => this._onMessage(ws, event);
    ws.onclose = (event) => this._onClose(ws, event.code, event.reason);
    ws.onerror = () => {}; // a close event always follows
    this._startWatchdog();
  }

  /**
   * Forget a socket now, then close it: when the network is gone its closing
   * handshake may never finish, and we do not wait for it to reconnect.
   */
  _drop(reason) {
    const ws = this._ws;
    if (!ws) {
      if (this._stopped) this._setState(State.OFFLINE, { reason });
      else if (reason === "network offline") {
        this._clearRetry();
        this._setState(State.OFFLINE, { reason });
      }
      return;
    }
    ws.onmessage = ws.onclose = null;
    try {
      ws.close(1000, reason.slice(0, 100));
    } catch {
      /* already closed */
    }
    this._onClose(ws, 1006, reason);
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._welcomed = false;
    this._syncing = false;
    this._stopWatchdog();
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    this._rejectPending();
    if (this.role === Role.LEADER) this._tabs.post({ k: "closed", code, reason });
    this._emit("disconnected", { code, reason });
    if (this.role === Role.FOLLOWER) {
      // It stepped down: another tab's socket serves this one now.
    } else if (this._stopped) {
      this._setState(State.OFFLINE, { reason: "closed" });
    } else if (NO_RETRY.has(code)) {
      this._loggedOut(code);
    } else if (globalThis.navigator && globalThis.navigator.onLine === false) {
      this._setState(State.OFFLINE, { reason: "network offline" });
    } else {
      this._scheduleReconnect(code);
    }
  }

  _rejectPending() {
    for (const [, pending] of this._pending) pending.reject(new Error("disconnected"));
    this._pending.clear();
  }

  /** Closed with 4401/4403: stop, and leave the tabs' election so that a page opened after a new login starts afresh. */
  _loggedOut(code) {
    this._stopped = true;
    this._leaveTabs();
    this._setState(State.OFFLINE, { reason: code === CLOSE_UNAUTHENTICATED ? "unauthenticated" : "forbidden" });
    this._emit("unauthenticated", { code });
  }

  /**
   * Exponential backoff with full jitter: a random wait in [minMs, min(max, base * 2^attempt)).
   * Uniform from the first retry on, with no pile at minMs: clients cut off together
   * (a server draining with 1012, a network blip) come back spread out.
   */
  _scheduleReconnect(code) {
    const { minMs, baseMs, maxMs } = this.options.backoff;
    const ceiling = Math.min(maxMs, baseMs * 2 ** this.attempt);
    let delay = minMs + Math.random() * Math.max(0, ceiling - minMs);
    if (code === CLOSE_RATE_LIMITED) delay = Math.max(delay, this.options.rateLimitedMs);
    this.attempt += 1;
    const due = Date.now() + delay;
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      if (seconds !== this.retryIn) {
        this._setState(State.OFFLINE, { retryIn: seconds, reason: "reconnecting" });
        this._emit("countdown", { seconds });
      }
    };
    this._clearRetry();
    tick();
    this._countdownTimer = setInterval(tick, 200);
    this._retryTimer = setTimeout(() => {
      this._clearRetry();
      this._open();
    }, delay);
  }

  _clearRetry() {
    clearTimeout(this._retryTimer);
    clearInterval(this._countdownTimer);
    this._retryTimer = this._countdownTimer = null;
  }

  /** No frame for two heartbeats and a margin: the socket is dead even if the browser has not noticed. */
  _startWatchdog() {
    this._stopWatchdog();
    this._watchdog = setInterval(() => {
      const limit = this._welcomed ? (this._heartbeatS * 2 + 5) * 1000 : this.options.connectTimeoutMs;
      if (Date.now() - this._lastFrameAt > limit) this._drop("no heartbeat");
    }, 1000);
  }

  _stopWatchdog() {
    clearInterval(this._watchdog);
    this._watchdog = null;
  }

  // --- frames in ---------------------------------------------------------------------------

  _onMessage(ws, event) {
    if (ws !== this._ws) return;
    this._lastFrameAt = Date.now();
    if (this.role === Role.LEADER) this._tabs.post({ k: "frames", data: event.data, base: this.cursor });
    this._onData(event.data);
  }

  _onData(data) {
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

  _onFrame(frame) {
    switch (frame.type) {
      case "welcome":
        return this._onWelcome(frame);
      case "notification":
        return this._onNotification(frame);
      case "synced":
        return this._onSynced(frame);
      case "reset":
        return this._onReset(frame);
      case "read":
      case "unread":
        this._countedUnread(frame);
        return this._emit(frame.type, frame);
      case "read_state":
        // Sent before a replay we asked for: which of the seqs we hold are unread now.
        this._countedUnread(frame);
        return this._emit("read_state", frame);
      case "heartbeat":
        this._countedUnread(frame);
        if (this.cursor !== null && frame.head_seq > this.cursor) this._resume();
        return this._emit("heartbeat", frame);
      case "reply":
        this._countedUnread(frame);
        return this._settle(frame.ref, frame.ok ? null : frame, frame);
      case "error":
        if (frame.ref !== undefined && this._pending.has(frame.ref)) return this._settle(frame.ref, frame, frame);
        if (frame.ref !== undefined && !String(frame.ref).startsWith(this._refPrefix)) return undefined; // another tab's
        return this._emit("error", frame);
      case "pong":
        return frame.ref === undefined ? undefined : this._settle(frame.ref, null, frame);
      default:
        return undefined; // frame types of a later protocol
    }
  }

  _onWelcome(frame) {
    this._welcomed = true;
    this._heartbeatS = frame.heartbeat_s || this._heartbeatS;
    this.connections += 1;
    this.attempt = 0;
    this._unreadBase = frame.head_seq;
    this._recentUnread = [];
    this._acked = Math.min(this._acked, this.cursor ?? frame.head_seq);
    this._setUnread(frame.unread);
    this._emit("welcome", { ...frame, reconnect: this.connections > 1 });
    if (this.cursor === null) {
      // Connected without since: the server starts us at its head.
      this._setCursor(frame.head_seq);
      this._setState(State.LIVE);
    } else {
      this._setState(State.SYNCING);
    }
  }

  _onNotification(frame) {
    const seq = frame.seq;
    this._lastSeen = seq;
    if (this.cursor !== null && (seq <= this.cursor || this._ahead.has(seq))) {
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
    this._ahead.set(seq, frame);
    this._resume();
  }

  _accept(frame) {
    this._setCursor(frame.seq);
    if (frame.seq > this._unreadBase) {
      this._unreadBase = frame.seq;
      if (!frame.read) {
        this._recentUnread.push(frame.seq);
        this._setUnread((this.unread ?? 0) + 1);
      }
    }
    if (this._syncing) this._synced += 1;
    this._sinceSynced += 1;
    this._emit("notification", frame);
    this._scheduleAck();
  }

  _drain() {
    while (this._ahead.has(this.cursor + 1)) {
      const frame = this._ahead.get(this.cursor + 1);
      this._ahead.delete(frame.seq);
      this._accept(frame);
    }
  }

  /** The server has sent everything up to `seq` on this socket: what we hold below it can go out. */
  _settleUpTo(seq) {
    for (const held of [...this._ahead.keys()].sort((a, b) => a - b)) {
      if (held > seq) break;
      const frame = this._ahead.get(held);
      this._ahead.delete(held);
      if (held > this.cursor) this._accept(frame);
    }
    if (seq > (this.cursor ?? 0)) this._setCursor(seq);
    this._drain();
  }

  /** `answered`: a follower's own resume was answered, and this was the last `synced` before the answer. */
  _onSynced(frame, answered = false) {
    if (!answered && this._isBehind()) {
      // The leader's replay began past this tab's cursor: it cannot close this tab's gap.
      if (this._ownResume) this._lastSynced = frame;
      else this._resume();
      return;
    }
    if (frame.more) {
      // A page ends at the last seq it carried; ask again from there.
      if (this._lastSeen !== null) this._settleUpTo(this._lastSeen);
      if (this.role === Role.FOLLOWER) this._resume();
      else this._send({ type: "resume", since: this.cursor });
      return;
    }
    // Seqs up to the head that the replay skipped have expired: the head is ours.
    this._settleUpTo(frame.head_seq);
    this._unreadBase = Math.max(this._unreadBase, frame.head_seq);
    // A replay the server started itself (it saw a gap) looks like live pushes on
    // the wire: count what it brought that was new, at most what it replayed.
    const replayed = this._syncing ? this._synced : Math.min(frame.replayed, this._sinceSynced);
    this._sinceSynced = 0;
    const resumed = this._syncing;
    this._syncing = false;
    this._synced = 0;
    this._flushAck();
    this._setState(State.LIVE);
    this._emit("synced", { head_seq: frame.head_seq, replayed, resumed, reconnect: this.connections > 1 });
  }

  _onReset(frame) {
    // The cursor is older than retention (or ahead of the server): start over from the head.
    this._setCursor(frame.head_seq, true);
    this._unreadBase = frame.head_seq;
    this._ahead.clear();
    this._syncing = false;
    this._synced = 0;
    this._setState(State.LIVE);
    this._emit("reset", frame);
  }

  _resume() {
    if (!this._welcomed || this.cursor === null) return;
    if (this.role === Role.FOLLOWER) return this._followerResume();
    if (this._syncing) return;
    this._syncing = true;
    this._synced = 0;
    this._setState(State.SYNCING);
    this._send({ type: "resume", since: this.cursor });
  }

  /**
   * The server's unread count covers seqs up to the head_seq it names; add the
   * unread notifications we accepted above it. Exact even when a read mark and
   * a publish cross on the wire.
   */
  _countedUnread(frame) {
    if (typeof frame.unread !== "number") return;
    if (typeof frame.head_seq !== "number") return this._setUnread(frame.unread);
    this._recentUnread = this._recentUnread.filter((seq) => seq > frame.head_seq);
    this._unreadBase = Math.max(this._unreadBase, frame.head_seq);
    this._setUnread(frame.unread + this._recentUnread.length);
  }

  /** Apply an unread count learned elsewhere (e.g. the answer to an HTTP mark-read). */
  setUnread(value) {
    this._setUnread(value);
  }

  _setUnread(value) {
    if (typeof value !== "number" || value === this.unread) return;
    this.unread = Math.max(0, value);
    this._emit("unreadcount", { unread: this.unread });
  }

  _setCursor(seq, force = false) {
    if (!force && this.cursor !== null && seq <= this.cursor) return;
    this.cursor = seq;
    if (force) this._acked = Math.min(this._acked, seq);
    this._storeCursor();
  }

  // --- tabs: one socket for every tab of the user ------------------------------------------
  // The leader posts every frame its socket receives, with its cursor before it; each
  // tab applies them with its own cursor, so each keeps its own de-duplication and gaps.
  // Followers post to the leader what they would send (read marks, requests, a resume
  // when they are behind it). Messages: {k: "frames" | "opening" | "socket" | "closed" |
  // "status" | "refused"} from the leader, {k: "hello" | "send" | "reconnect"} to it.

  _joinTabs() {
    this.role = Role.FOLLOWER; // until the election says otherwise
    this._setState(State.CONNECTING);
    this._tabs = new TabGroup(`notifications:${this.options.userId}`, {
      lead: () => this._lead(),
      follow: (leader) => this._follow(leader),
      message: (body, from) => (this.role === Role.LEADER ? this._fromFollower(body, from) : this._fromLeader(body)),
    });
    this._tabs.start();
  }

  _leaveTabs() {
    if (!this._tabs) return;
    this._tabs.leave();
    this._tabs = null;
    if (this.role === Role.FOLLOWER) this._forgetSocket();
    this.role = Role.SOLO;
  }

  _lead() {
    this._forgetSocket();
    this.role = Role.LEADER;
    // From this tab's own cursor: it holds everything up to it, whatever the last leader held.
    if (!this._stopped) this._open();
  }

  _follow(leader) {
    const wasLeader = this.role === Role.LEADER;
    this.role = Role.FOLLOWER;
    if (wasLeader) {
      // The fallback election settled on an older tab: its socket serves this one now.
      this._clearRetry();
      this._drop("another tab holds the socket");
    }
    this._forgetSocket();
    this._setState(State.CONNECTING);
    this._tabs.post({ k: "hello" }, leader);
  }

  /** What this tab knew through the last leader's socket: a new socket brings it again. */
  _forgetSocket() {
    this._welcomed = false;
    this._syncing = false;
    this._synced = 0;
    this._sinceSynced = 0;
    this._ahead.clear();
    this._lastSeen = null;
    this._leaderCursor = null;
    this._ownResume = false;
    this._lastSynced = null;
    this._rejectPending();
  }

  _fromFollower(body, from) {
    switch (body.k) {
      case "hello":
        return this._tabs.post(this._status(), from);
      case "send":
        if (!this._send(body.frame) && body.frame.ref !== undefined) this._tabs.post({ k: "refused", ref: body.frame.ref }, from);
        return undefined;
      case "reconnect":
        return this.reconnectNow();
      default:
        return undefined;
    }
  }

  _fromLeader(body) {
    switch (body.k) {
      case "frames":
        this._leaderCursor = body.base;
        return this._onData(body.data);
      case "opening":
        this._forgetSocket();
        this._syncing = this.cursor !== null; // the socket opens with since: a replay follows its welcome
        return undefined;
      case "socket":
        this.attempt = body.attempt;
        this._setState(body.state, body);
        if (body.retryIn !== null) this._emit("countdown", { seconds: body.retryIn });
        return undefined;
      case "closed":
        this._forgetSocket();
        this._emit("disconnected", { code: body.code, reason: body.reason });
        if (NO_RETRY.has(body.code)) this._loggedOut(body.code);
        return undefined;
      case "status":
        return this._applyStatus(body);
      case "refused":
        return this._settle(body.ref, new Error("not connected"));
      default:
        return undefined;
    }
  }

  /** The leader's answer to a tab that just joined: where its socket stands. */
  _status() {
    return {
      k: "status",
      welcomed: this._welcomed,
      state: this.state,
      retryIn: this.retryIn,
      reason: this._stateReason,
      attempt: this.attempt,
      cursor: this.cursor,
      heartbeatS: this._heartbeatS,
      unread: this.unread,
      unreadBase: this._unreadBase,
      recentUnread: this._recentUnread,
    };
  }

  _applyStatus(status) {
    this._leaderCursor = status.cursor;
    this.attempt = status.attempt;
    if (!status.welcomed) {
      this._setState(status.state, status);
      return;
    }
    if (this._welcomed) return; // the relayed welcome came first
    this._welcomed = true;
    this._heartbeatS = status.heartbeatS;
    this._unreadBase = status.unreadBase;
    this._recentUnread = [...status.recentUnread];
    this._setUnread(status.unread);
    if (this.cursor === null && status.cursor !== null) this._setCursor(status.cursor);
    if (this._isBehind() || status.state === State.SYNCING) this._resume();
    else this._setState(status.state);
  }

  _isBehind() {
    return this.role === Role.FOLLOWER && this.cursor !== null && this._leaderCursor !== null && this.cursor < this._leaderCursor;
  }

  _followerResume() {
    if (!this._syncing) {
      this._syncing = true;
      this._synced = 0;
      this._setState(State.SYNCING);
    }
    // Not behind the leader: it meets the same gap, and its replay reaches this tab too.
    if (!this._isBehind() || this._ownResume) return;
    // Behind it (this page was rendered before the leader's last frames): a replay from this
    // tab's cursor, with a ref, whose reply says the replay has been sent.
    this._ownResume = true;
    this._lastSynced = null;
    this.request({ type: "resume", since: this.cursor }).then(
      () => this._ownResumeAnswered(),
      () => {
        this._ownResume = false; // the next gap, heartbeat or synced asks again
      },
    );
  }

  _ownResumeAnswered() {
    const synced = this._lastSynced;
    this._ownResume = false;
    this._lastSynced = null;
    // Nothing left to do if the leader's own frames caught this tab up meanwhile, or a reset answered.
    if (this._syncing && synced) this._onSynced(synced, true);
  }

  // --- cursor storage ------------------------------------------------------------------

  _storageKey() {
    return this.options.userId == null ? null : `notifications:cursor:${this.options.userId}`;
  }

  _loadCursor() {
    const key = this._storageKey();
    if (!key || !this.storage) return null;
    const value = Number.parseInt(this.storage.getItem(key) ?? "", 10);
    return Number.isSafeInteger(value) && value >= 0 ? value : null;
  }

  _storeCursor() {
    const key = this._storageKey();
    if (!key || !this.storage) return;
    try {
      this.storage.setItem(key, String(this.cursor));
    } catch {
      /* storage full or denied: the in-memory cursor still works */
    }
  }

  // --- frames out ------------------------------------------------------------------------

  _send(frame) {
    if (this.role === Role.FOLLOWER) {
      if (!this._welcomed) return false;
      this._tabs.post({ k: "send", frame }, this._tabs.leader);
      return true;
    }
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || !this._welcomed) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  // The leader acks for every tab: they are all sent the same frames, so a follower's
  // cursor is never ahead of the leader's, and its acks would only cost the server frames.
  _scheduleAck() {
    if (this.role === Role.FOLLOWER) return;
    if (this.cursor - this._acked >= this.options.ackEvery) {
      this._flushAck();
    } else if (!this._ackTimer) {
      this._ackTimer = setTimeout(() => this._flushAck(), this.options.ackDelayMs);
    }
  }

  _flushAck() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    if (this.role === Role.FOLLOWER) return;
    if (this.cursor !== null && this.cursor > this._acked && this._send({ type: "ack", seq: this.cursor })) {
      this._acked = this.cursor;
    }
  }

  /** Send a frame with a ref; resolves with the `reply`, rejects on an error reply, timeout or disconnect. */
  request(frame) {
    const ref = `${this._refPrefix}${++this._ref}`;
    return new Promise((resolve, reject) => {
      if (!this._send({ ...frame, ref })) {
        reject(new Error("not connected"));
        return;
      }
      const timer = setTimeout(() => this._settle(ref, new Error("timed out")), this.options.requestTimeoutMs);
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

  _settle(ref, error, reply) {
    const pending = this._pending.get(ref);
    if (!pending) return;
    this._pending.delete(ref);
    if (error) pending.reject(error instanceof Error ? error : Object.assign(new Error(error.message || error.error || "failed"), { frame: error }));
    else pending.resolve(reply);
  }

  /** Mark these notification ids read on every device of the user. */
  markRead(ids) {
    return this.request({ type: "read", ids: [...ids] });
  }

  markAllRead() {
    return this.request({ type: "read", all: true });
  }

  subscribe(topic) {
    return this.request({ type: "subscribe", topic });
  }

  unsubscribe(topic) {
    return this.request({ type: "unsubscribe", topic });
  }

  ping() {
    return this.request({ type: "ping" });
  }

  get connected() {
    return this._welcomed;
  }
}
