/**
 * Noticing a dead socket (docs/client.md, "Dead sockets"). The browser's `offline` event
 * drops the socket at once and `online` brings it back; a page coming back to `visible`
 * with no socket reconnects at once. Chromium's offline emulation stops traffic but
 * leaves an open WebSocket OPEN, with no close event ever, so as a last resort a
 * watchdog drops a socket that has been silent too long.
 */
export class SocketWatch {
  /**
   * `connectTimeoutMs`: how long a socket may wait for its `welcome`. `heartbeatS()`: the
   * server's heartbeat once the socket is welcomed, else null. `drop(reason)`: give the
   * socket up. `reconnect()`: try again now. `waiting()`: offline with no socket, and not closed for good.
   */
  constructor({ connectTimeoutMs, heartbeatS, drop, reconnect, waiting }) {
    this._connectTimeoutMs = connectTimeoutMs;
    this._heartbeatS = heartbeatS;
    this._drop = drop;
    this._watchdog = null;
    this._lastFrameAt = 0;
    this._onOnline = () => reconnect();
    this._onOffline = () => drop("network offline");
    this._onVisible = () => {
      if (globalThis.document?.visibilityState === "visible" && waiting()) reconnect();
    };
  }

  /** Hear the browser's network and visibility events (from connect() until close()). */
  listen() {
    globalThis.addEventListener?.("online", this._onOnline);
    globalThis.addEventListener?.("offline", this._onOffline);
    globalThis.document?.addEventListener?.("visibilitychange", this._onVisible);
  }

  unlisten() {
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.removeEventListener?.("offline", this._onOffline);
    globalThis.document?.removeEventListener?.("visibilitychange", this._onVisible);
  }

  /** A socket opened: no frame for two heartbeats and a margin, and it is dead even if the browser has not noticed. */
  watch() {
    this.stop();
    this._lastFrameAt = Date.now();
    this._watchdog = setInterval(() => {
      const heartbeatS = this._heartbeatS();
      const limit = heartbeatS !== null ? (heartbeatS * 2 + 5) * 1000 : this._connectTimeoutMs;
      if (Date.now() - this._lastFrameAt > limit) this._drop("no heartbeat");
    }, 1000);
  }

  /** A frame arrived on the socket. */
  heard() {
    this._lastFrameAt = Date.now();
  }

  stop() {
    clearInterval(this._watchdog);
    this._watchdog = null;
  }
}
