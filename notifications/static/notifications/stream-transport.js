/**
 * The event stream (docs/protocol.md, "The event stream"): the socket's frames over plain
 * HTTP, for networks that strip `Upgrade`. StreamSocket looks to client.js like a WebSocket
 * (readyState, send, close, onmessage, onclose): frames come from an EventSource, and
 * `send` POSTs a frame whose answer (`reply`, `pong`, `error`) comes back as a message.
 * TransportChoice decides which of the two to open (docs/client.md, "Transports").
 */

export const Transport = Object.freeze({ WEBSOCKET: "websocket", STREAM: "stream" });

const STREAM_HEADER = "Notify-Stream";
const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;
// A refused stream's status, as the socket's close code a client acts on (4401: log in again; else retry).
const REFUSALS = { 401: 4401, 403: 4403, 503: 4503 };

function cookie(name) {
  const found = (globalThis.document?.cookie ?? "").split("; ").find((c) => c.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

/** The CSRF token a session's POST needs: Django's cookie, else the page's form field. */
export function csrfToken() {
  return cookie("csrftoken") || globalThis.document?.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
}

export class StreamSocket {
  /** `url`: the stream's, with its query. `framesUrl`: where frames are POSTed. `token`: a connection token, or null for the session. */
  constructor(url, { framesUrl, token = null, EventSource = globalThis.EventSource, fetch = globalThis.fetch.bind(globalThis) }) {
    this.readyState = CONNECTING;
    this.onmessage = this.onclose = this.onerror = null;
    this.onreopen = null; // the browser reconnects the stream itself (with Last-Event-ID): a new welcome follows
    this._framesUrl = framesUrl;
    this._token = token;
    this._fetch = fetch;
    this._streamId = null;
    const source = new EventSource(url);
    this._source = source;
    source.onmessage = (event) => this._message(event.data);
    // The server ends a stream with a `close` event carrying the socket's close code (4401, 4408, 1012).
    source.addEventListener("close", (event) => {
      let code = 1006;
      try {
        code = JSON.parse(event.data).code;
      } catch {
        /* a malformed close is still a close */
      }
      this._end(code, "the server ended the stream");
    });
    source.onerror = () => {
      if (source.readyState === 2) {
        this._refused(url); // not a 200 text/event-stream: the browser gives up
      } else if (this.readyState === OPEN) {
        this.readyState = CONNECTING;
        this._streamId = null;
        this.onreopen?.();
      }
    };
  }

  _message(data) {
    if (this.readyState !== OPEN) {
      // The first frame of every (re)connection is `welcome`, which names the stream for our POSTs.
      try {
        const frame = JSON.parse(data);
        if (frame.type === "welcome") {
          this._streamId = frame.stream ?? null;
          this.readyState = OPEN;
        }
      } catch {
        return;
      }
    }
    this.onmessage?.({ data });
  }

  send(text) {
    if (this.readyState !== OPEN) throw new Error("the stream is not open");
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (this._streamId) headers[STREAM_HEADER] = this._streamId;
    if (this._token) headers.Authorization = `Bearer ${this._token}`;
    else headers["X-CSRFToken"] = csrfToken();
    this._fetch(this._framesUrl, { method: "POST", headers, body: text, credentials: "same-origin" })
      .then((response) => (response.status === 204 ? "" : response.text()))
      .then((body) => {
        // Only frames: a 401 or 429 JSON error has no `type`, and the request times out as a lost frame would.
        if (body && this.readyState === OPEN && JSON.parse(body).type) this.onmessage?.({ data: body });
      })
      .catch(() => {});
  }

  close() {
    this.readyState = CLOSED;
    this._source.close();
  }

  /**
   * EventSource hides the status of a stream it refused, so a logged-out user would back off
   * for ever as if the network were down. Ask once more, by fetch, to read it; a stream that
   * opens this time is dropped at once and counts as a failed attempt (the client retries).
   */
  _refused(url) {
    const controller = new AbortController();
    this._fetch(url, { headers: { Accept: "text/event-stream" }, credentials: "same-origin", signal: controller.signal })
      .then(
        (response) => {
          controller.abort();
          return REFUSALS[response.status] ?? 1006;
        },
        () => 1006,
      )
      .then((code) => this._end(code, "the stream was refused"));
  }

  _end(code, reason) {
    if (this.readyState === CLOSED) return;
    this.close();
    this.onclose?.({ code, reason });
  }
}

/**
 * Which transport to open: the socket first; after `failures` handshakes in a row that never
 * reached `welcome`, the stream (and back again if it fails as often). While on the stream, a
 * probe socket is tried every `probeMs`; once one is welcomed, `back()` is called to return.
 */
export class TransportChoice {
  constructor({ forced, failures, probeMs, WebSocket, probeUrl, back }) {
    this.current = forced ?? Transport.WEBSOCKET;
    this._forced = forced;
    this._failures = failures;
    this._probeMs = probeMs;
    this._WebSocket = WebSocket;
    this._probeUrl = probeUrl;
    this._back = back;
    this._failed = 0;
    this._timer = null;
    this._probe = null;
  }

  /** A connection closed; `welcomed`: it got as far as `welcome`. Returns true when the next one takes the other transport. */
  closed(welcomed) {
    if (welcomed || this._forced) {
      this._failed = 0;
      return false;
    }
    this._failed += 1;
    if (this._failed < this._failures) return false;
    this._failed = 0;
    this.current = this.current === Transport.WEBSOCKET ? Transport.STREAM : Transport.WEBSOCKET;
    return true;
  }

  /** The stream is live: try the socket again later. */
  live() {
    this.stop();
    if (this.current !== Transport.STREAM || this._forced) return;
    this._timer = setTimeout(() => this._tryTheSocket(), this._probeMs);
  }

  stop() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._probe) {
      this._probe.onmessage = this._probe.onclose = null;
      this._probe.close();
      this._probe = null;
    }
  }

  _tryTheSocket() {
    let probe;
    try {
      probe = new this._WebSocket(this._probeUrl());
    } catch {
      return this.live();
    }
    this._probe = probe;
    probe.onmessage = () => {
      // Welcomed: the socket gets through again.
      this.stop();
      this.current = Transport.WEBSOCKET;
      this._back();
    };
    probe.onclose = () => {
      this._probe = null;
      this.live();
    };
  }
}
