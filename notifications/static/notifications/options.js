/**
 * The options of client.js's NotificationClient, and what it makes of them
 * (docs/client.md, "Options").
 */

import { tabsSupported } from "./tabs.js";

const DEFAULTS = Object.freeze({
  url: null, // default: ws(s)://<this host>/ws/notifications/
  userId: null, // keys the stored cursor; without it nothing is stored
  token: null, // an app's connection token, or a function returning the current one (sent as ?token=)
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
  transport: null, // "websocket" or "stream" forces one; default: the socket, the event stream where the socket does not get through
  streamUrl: "/api/v1/me/stream", // the event stream (stream-transport.js)
  framesUrl: "/api/v1/me/frames", // where the stream's client frames are POSTed
  fallbackAfter: 2, // socket handshakes in a row that fail before the stream is tried
  socketRetryMs: 60000, // on the stream, how often to see whether the socket gets through again
  EventSource: null, // default: globalThis.EventSource
});

/** The options given, over the defaults (`backoff` field by field). */
export function withDefaults(options) {
  return { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
}

export function defaultUrl() {
  const { protocol, host } = globalThis.location;
  return `${protocol === "https:" ? "wss:" : "ws:"}//${host}/ws/notifications/`;
}

/** Whether the client shares one socket with the user's other tabs: it needs a user, and a browser that can. */
export function sharesAcrossTabs(options) {
  const share = options.shareAcrossTabs ?? !options.WebSocket;
  return Boolean(share) && options.userId != null && tabsSupported();
}
