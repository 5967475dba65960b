/**
 * Browser client for the notification service, WebSocket protocol v1.
 *
 * ES modules, no build step, no dependency. It keeps a cursor (the highest
 * seq it holds with nothing missing below it), so that whatever happens to the
 * socket every notification is handed to `on("notification")` once, in seq
 * order: it resumes from the cursor on every reconnect, asks again on a gap,
 * drops duplicates, acks in batches, and keeps the inbox state (read, archived,
 * snoozed, deleted) and the unread and unseen counts in step with every other
 * device of the user: each change is a `state` event in the same stream. The tabs of one user share one socket: one
 * tab leads and relays its frames to the others. API: docs/client.md.
 *
 *   import { NotificationClient } from "/static/notifications/client.js";
 *   const client = new NotificationClient({ userId: 7, since: 41 });
 *   client.on("notification", (n) => show(n));   // before connect: nothing is missed
 *   client.on("state", ({ state, retryIn }) => indicator(state, retryIn));
 *   client.connect();
 *
 * This module holds the public API and the socket; the rest is in the modules beside
 * it, each a part the client owns (docs/client.md, "Modules").
 */

import { backoffDelay, RetryCountdown } from "./backoff.js";
import { InboxState } from "./inbox-state.js";
import { defaultUrl, sharesAcrossTabs, withDefaults } from "./options.js";
import { StoredCursor } from "./ordered-stream.js";
import { PendingRequests } from "./requests.js";
import { SocketWatch } from "./socket-watch.js";
import { State } from "./states.js";
import { StreamSync } from "./stream-sync.js";
import { Role, TabRelay } from "./tab-relay.js";
import { StreamSocket, Transport, TransportChoice } from "./stream-transport.js";
import { UnreadCount } from "./unread-count.js";

export { Role, State, Transport };

export const PROTOCOL_VERSION = 1;

const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_RATE_LIMITED = 4429;
const NO_RETRY = new Set([CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN]);

export class NotificationClient {
  constructor(options = {}) {
    this.options = withDefaults(options);
    this.url = this.options.url || defaultUrl();
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    this.handlers = new Map();
    this._share = sharesAcrossTabs(this.options);

    this.state = State.OFFLINE;
    this.retryIn = null; // seconds until the next attempt while a reconnect is scheduled
    this.attempt = 0;

    const store = new StoredCursor(this.options.storage, this.options.userId);
    this._unread = new UnreadCount((unread) => this._emit("unreadcount", { unread }));
    this._unseen = new UnreadCount((unseen) => this._emit("unseencount", { unseen }), { field: "unseen", counts: () => true });
    this._inbox = new InboxState();
    this._requests = new PendingRequests({ send: (frame) => this._send(frame), timeoutMs: this.options.requestTimeoutMs });
    this._sync = new StreamSync({
      cursor: this.options.since ?? store.load(),
      store,
      unread: this._unread,
      unseen: this._unseen,
      inbox: this._inbox,
      requests: this._requests,
      ackDelayMs: this.options.ackDelayMs,
      ackEvery: this.options.ackEvery,
      host: {
        send: (frame) => this._send(frame),
        setState: (state) => this._setState(state),
        emit: (event, payload) => this._emit(event, payload),
        socketWelcomed: () => {
          this.attempt = 0; // the backoff starts over
        },
        tabs: () => this._tabs,
      },
    });
    this._retry = new RetryCountdown({ tick: (seconds) => this._countdown(seconds), done: () => this._open() });
    this._tabs = null; // a TabRelay while this client shares its socket with the user's other tabs

    this._watch = new SocketWatch({
      connectTimeoutMs: this.options.connectTimeoutMs,
      heartbeatS: () => (this._sync.welcomed ? this._sync.heartbeatS : null),
      drop: (reason) => this._drop(reason),
      reconnect: () => this.reconnectNow(),
      waiting: () => !this._ws && !this._stopped && this.state === State.OFFLINE,
    });

    this._transport = new TransportChoice({
      // An injected WebSocket (tests, a custom transport) is used as given: no fallback unless asked.
      forced: this.options.transport ?? (this.options.WebSocket ? Transport.WEBSOCKET : null),
      failures: this.options.fallbackAfter,
      probeMs: this.options.socketRetryMs,
      WebSocket: this.WebSocket,
      probeUrl: () => this._url(this.url, false),
      back: () => {
        this._drop("the socket gets through again");
        this.reconnectNow();
      },
    });

    this._ws = null;
    this._stopped = true;
    this._stateReason = null;
  }

  /** Which transport carries the connection: "websocket", or "stream" where the socket does not get through. */
  get transport() {
    return this._transport.current;
  }

  get cursor() {
    return this._sync.cursor;
  }

  get unread() {
    return this._unread.value;
  }

  /** Notifications in the inbox above the user's seen mark (the bell's badge), as exact as `unread`. */
  get unseen() {
    return this._unseen.value;
  }

  /** The notifications this client holds, with every `state` event applied (inbox-state.js). */
  get inbox() {
    return this._inbox;
  }

  get connected() {
    return this._sync.welcomed;
  }

  get connections() {
    return this._sync.connections;
  }

  get duplicates() {
    return this._sync.duplicates;
  }

  get role() {
    return this._tabs?.role ?? Role.SOLO;
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
    const payload = { state, retryIn, attempt: this.attempt, reason: this._stateReason, transport: this.transport };
    if (state === State.LIVE && this.role !== Role.FOLLOWER) this._transport.live();
    // The socket's own states; a follower works out syncing and live from the frames themselves.
    if (state === State.CONNECTING || state === State.OFFLINE) this._tabs?.shareSocketState(payload);
    this._emit("state", payload);
  }

  // --- lifecycle -----------------------------------------------------------------------

  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._watch.listen();
    if (this._share) this._joinTabs();
    else this._open();
    return this;
  }

  /** Close for good (no reconnect) until connect() is called again. */
  close() {
    this._stopped = true;
    this._transport.stop();
    this._watch.unlisten();
    this._retry.cancel();
    this._leaveTabs();
    this._drop("closed by the page");
  }

  /** Skip the backoff wait (the network came back, the user clicked "retry"). */
  reconnectNow() {
    if (this._stopped) return;
    if (this.role === Role.FOLLOWER) {
      this._tabs.reconnectThroughLeader();
      return;
    }
    if (this._ws) return;
    this.attempt = 0;
    this._retry.cancel();
    this._open();
  }

  _open() {
    if (globalThis.navigator && globalThis.navigator.onLine === false) {
      this._setState(State.OFFLINE, { reason: "network offline" });
      return; // the `online` event brings us back
    }
    const stream = this.transport === Transport.STREAM;
    const url = this._url(stream ? this.options.streamUrl : this.url, true);
    this._sync.opening();
    this._setState(State.CONNECTING);
    this._tabs?.shareOpening();
    let ws;
    try {
      if (stream) {
        const EventSource = this.options.EventSource || globalThis.EventSource;
        ws = new StreamSocket(url, { framesUrl: this.options.framesUrl, token: this._token(), EventSource });
        ws.onreopen = () => this._reopening(ws);
      } else {
        ws = new this.WebSocket(url);
      }
    } catch (e) {
      console.error("notification client: cannot open the socket", e);
      this._scheduleReconnect(1006);
      return;
    }
    this._ws = ws;
    ws.onmessage = (event) => this._onMessage(ws, event);
    ws.onclose = (event) => this._onClose(ws, event.code, event.reason);
    ws.onerror = () => {}; // a close event always follows
    this._watch.watch();
  }

  /** An app's connection token (docs/integrate.md), read afresh at every attempt: the page renews it. */
  _token() {
    return typeof this.options.token === "function" ? this.options.token() : this.options.token;
  }

  _url(base, resume) {
    const url = new URL(base, globalThis.location?.href);
    const token = this._token();
    if (token) url.searchParams.set("token", token);
    if (resume && this.cursor !== null) url.searchParams.set("since", String(this.cursor));
    url.searchParams.set("batch", "1"); // we read `batch` frames: several notifications in one
    return url.toString();
  }

  /** The browser reconnects the stream by itself, resuming with Last-Event-ID: a new welcome and replay follow. */
  _reopening(ws) {
    if (ws !== this._ws) return;
    this._requests.rejectAll();
    this._sync.closed();
    this._sync.opening();
    this._setState(State.CONNECTING);
    this._tabs?.shareOpening();
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
        this._retry.cancel();
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
    this._transport.stop();
    if (this._transport.closed(this._sync.welcomed)) this.attempt = 0; // the other transport gets a prompt first try
    this._sync.closed();
    this._watch.stop();
    this._requests.rejectAll();
    this._tabs?.shareClosed(code, reason);
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

  /** Closed with 4401/4403: stop, and leave the tabs' election so that a page opened after a new login starts afresh. */
  _loggedOut(code) {
    this._stopped = true;
    this._leaveTabs();
    this._setState(State.OFFLINE, { reason: code === CLOSE_UNAUTHENTICATED ? "unauthenticated" : "forbidden" });
    this._emit("unauthenticated", { code });
  }

  /** The backoff wait (backoff.js), at least rateLimitedMs after 4429. */
  _scheduleReconnect(code) {
    let delay = backoffDelay(this.options.backoff, this.attempt);
    if (code === CLOSE_RATE_LIMITED) delay = Math.max(delay, this.options.rateLimitedMs);
    this.attempt += 1;
    this._retry.start(delay);
  }

  _countdown(seconds) {
    if (seconds === this.retryIn) return;
    this._setState(State.OFFLINE, { retryIn: seconds, reason: "reconnecting" });
    this._emit("countdown", { seconds });
  }

  // --- frames in ---------------------------------------------------------------------------

  _onMessage(ws, event) {
    if (ws !== this._ws) return;
    this._watch.heard();
    this._tabs?.shareFrames(event.data, this.cursor);
    this._sync.receive(event.data);
  }

  // --- tabs: one socket for every tab of the user (tab-relay.js) -----------------------------

  _joinTabs() {
    this._tabs = new TabRelay(`notifications:${this.options.userId}`, {
      lead: () => {
        this._forgetSocket();
        // From this tab's own cursor: it holds everything up to it, whatever the last leader held.
        if (!this._stopped) this._open();
      },
      follow: (wasLeader) => this._follow(wasLeader),
      status: () => this._status(),
      send: (frame) => this._send(frame),
      reconnect: () => this.reconnectNow(),
      frames: (data) => this._sync.receive(data),
      opening: () => {
        this._requests.rejectAll();
        this._sync.opening();
      },
      socketState: (body) => this._mirrorSocketState(body),
      closed: (code, reason) => this._leaderClosed(code, reason),
      joined: (status) => this._joinedLeader(status),
      refused: (ref) => this._requests.settle(ref, new Error("not connected")),
    });
    this._setState(State.CONNECTING);
    this._tabs.start();
  }

  _leaveTabs() {
    const tabs = this._tabs;
    if (!tabs) return;
    tabs.leave();
    this._tabs = null;
    if (tabs.role === Role.FOLLOWER) this._forgetSocket();
  }

  _follow(wasLeader) {
    if (wasLeader) {
      // The fallback election settled on an older tab: its socket serves this one now.
      this._retry.cancel();
      this._drop("another tab holds the socket");
    }
    this._forgetSocket();
    this._setState(State.CONNECTING);
  }

  /** What this tab knew through the last leader's socket: a new socket brings it again. */
  _forgetSocket() {
    this._sync.forget();
    this._requests.rejectAll();
  }

  _mirrorSocketState(body) {
    this.attempt = body.attempt;
    if (body.transport) this._transport.current = body.transport;
    this._setState(body.state, body);
    if (body.retryIn !== null) this._emit("countdown", { seconds: body.retryIn });
  }

  _leaderClosed(code, reason) {
    this._forgetSocket();
    this._emit("disconnected", { code, reason });
    if (NO_RETRY.has(code)) this._loggedOut(code);
  }

  /** The leader's answer to a tab that just joined: where its socket stands. */
  _status() {
    const { state, retryIn, attempt } = this;
    return { ...this._sync.status(), state, retryIn, reason: this._stateReason, attempt };
  }

  _joinedLeader(status) {
    this.attempt = status.attempt;
    if (status.welcomed) this._sync.joined(status);
    else this._setState(status.state, status);
  }

  // --- frames out ------------------------------------------------------------------------

  _send(frame) {
    if (this.role === Role.FOLLOWER) return this._sync.welcomed && this._tabs.sendThroughLeader(frame);
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || !this._sync.welcomed) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Send a frame with a ref; resolves with the `reply`, rejects on an error reply, timeout or disconnect. */
  request(frame) {
    return this._requests.request(frame);
  }

  /** Apply an unread count learned elsewhere (e.g. the answer to an HTTP mark-read). */
  setUnread(value) {
    this._unread.set(value);
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
}
