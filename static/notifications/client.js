/**
 * Browser client for the notification service, WebSocket protocol v1.
 *
 * One ES module, no build step, no dependency. It keeps a cursor (the highest
 * seq it holds with nothing missing below it), so that whatever happens to the
 * socket every notification is handed to `on("notification")` once, in seq
 * order: it resumes from the cursor on every reconnect, asks again on a gap,
 * drops duplicates, acks in batches, and keeps the unread count in step with
 * every other device of the user. API: docs/client.md.
 *
 *   import { NotificationClient } from "/static/notifications/client.js";
 *   const client = new NotificationClient({ userId: 7, since: 41 });
 *   client.on("notification", (n) => show(n));   // before connect: nothing is missed
 *   client.on("state", ({ state, retryIn }) => indicator(state, retryIn));
 *   client.connect();
 */

export const PROTOCOL_VERSION = 1;

/** Connection states, in the order a healthy connection goes through them. */
export const State = Object.freeze({
  CONNECTING: "connecting", // opening the socket, or waiting for `welcome`
  SYNCING: "syncing", // connected, replaying what was missed
  LIVE: "live", // connected and caught up
  OFFLINE: "offline", // no socket: retrying after `retryIn` s, or waiting (network down, logged out, closed)
});

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

    this.state = State.OFFLINE;
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
    this._pending = new Map();
    this._onOnline = () => this.reconnectNow();
    this._onOffline = () => this._drop("network offline");
    this._onVisible = () => {
      if (globalThis.document?.visibilityState === "visible" && !this._ws && !this._stopped) this.reconnectNow();
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
    const changed = state !== this.state || extra.retryIn !== this.retryIn;
    this.state = state;
    this.retryIn = extra.retryIn ?? null;
    if (changed) this._emit("state", { state, retryIn: this.retryIn, attempt: this.attempt, reason: extra.reason ?? null });
  }

  // --- lifecycle -----------------------------------------------------------------------

  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    globalThis.addEventListener?.("online", this._onOnline);
    globalThis.addEventListener?.("offline", this._onOffline);
    globalThis.document?.addEventListener?.("visibilitychange", this._onVisible);
    this._open();
    return this;
  }

  /** Close for good (no reconnect) until connect() is called again. */
  close() {
    this._stopped = true;
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.removeEventListener?.("offline", this._onOffline);
    globalThis.document?.removeEventListener?.("visibilitychange", this._onVisible);
    this._clearRetry();
    this._drop("closed by the page");
  }

  /** Skip the backoff wait (the network came back, the user clicked "retry"). */
  reconnectNow() {
    if (this._stopped || this._ws) return;
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
    for (const [, pending] of this._pending) pending.reject(new Error("disconnected"));
    this._pending.clear();
    this._emit("disconnected", { code, reason });
    if (this._stopped) {
      this._setState(State.OFFLINE, { reason: "closed" });
    } else if (NO_RETRY.has(code)) {
      this._stopped = true;
      this._setState(State.OFFLINE, { reason: code === CLOSE_UNAUTHENTICATED ? "unauthenticated" : "forbidden" });
      this._emit("unauthenticated", { code });
    } else if (globalThis.navigator && globalThis.navigator.onLine === false) {
      this._setState(State.OFFLINE, { reason: "network offline" });
    } else {
      this._scheduleReconnect(code);
    }
  }

  /** Exponential backoff with full jitter: a random wait in [0, min(max, base * 2^attempt)). */
  _scheduleReconnect(code) {
    const { minMs, baseMs, maxMs } = this.options.backoff;
    const ceiling = Math.min(maxMs, baseMs * 2 ** this.attempt);
    let delay = Math.max(minMs, Math.random() * ceiling);
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
    let frame;
    try {
      frame = JSON.parse(event.data);
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

  _onSynced(frame) {
    if (frame.more) {
      // A page ends at the last seq it carried; ask again from there.
      if (this._lastSeen !== null) this._settleUpTo(this._lastSeen);
      this._send({ type: "resume", since: this.cursor });
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
    if (this._syncing || !this._welcomed || this.cursor === null) return;
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
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || !this._welcomed) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  _scheduleAck() {
    if (this.cursor - this._acked >= this.options.ackEvery) {
      this._flushAck();
    } else if (!this._ackTimer) {
      this._ackTimer = setTimeout(() => this._flushAck(), this.options.ackDelayMs);
    }
  }

  _flushAck() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    if (this.cursor !== null && this.cursor > this._acked && this._send({ type: "ack", seq: this.cursor })) {
      this._acked = this.cursor;
    }
  }

  /** Send a frame with a ref; resolves with the `reply`, rejects on an error reply, timeout or disconnect. */
  request(frame) {
    const ref = `c${++this._ref}`;
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
