/**
 * <notify-inbox>: a drop-in inbox for an app's own pages (docs/integrate.md, "Beside the app").
 *
 *   <script type="module" src="https://notify.example/static/notifications/widget.js"></script>
 *   <notify-inbox server="https://notify.example" token-url="/notifications/token"></notify-inbox>
 *
 * It fetches a connection token from the app's `token-url` (same origin as the
 * page, with its cookies; the answer is `{"token": "<jwt>"}`), and again before
 * the token expires or when the service says it no longer holds. It runs
 * client.js, so it keeps the client's guarantees: one socket per browser,
 * replay on reconnect, seq order, no duplicates. Its own shadow DOM keeps the
 * page's styles out. Text is set with textContent only; links are http(s).
 */

import { NotificationClient, State } from "./client.js";
import { safeLink } from "./links.js";

const LATEST = 10; // notifications the dropdown lists
const RENEW_BEFORE_S = 60; // a token is renewed this long before it expires...
const RENEW_AT_FRACTION = 0.8; // ...or after this much of its life, whichever is sooner

const STYLE = `
  :host { position: relative; display: inline-block; font: 14px/1.4 system-ui, sans-serif; color: #1f2328; }
  button.bell { position: relative; border: 0; background: none; cursor: pointer; font-size: 20px; padding: 4px 8px; }
  .count { position: absolute; top: -2px; right: -2px; min-width: 18px; padding: 0 4px; border-radius: 9px;
           background: #cf222e; color: #fff; font-size: 11px; line-height: 18px; text-align: center; }
  .count[hidden] { display: none; }
  .panel { position: absolute; right: 0; z-index: 1000; width: min(360px, 90vw); margin-top: 4px; background: #fff;
           border: 1px solid #d0d7de; border-radius: 8px; box-shadow: 0 8px 24px rgba(0,0,0,.12); }
  .panel[hidden] { display: none; }
  header, footer { display: flex; justify-content: space-between; align-items: center; padding: 8px 12px; }
  header { border-bottom: 1px solid #d0d7de; font-weight: 600; }
  footer { border-top: 1px solid #d0d7de; }
  .state { font-weight: normal; font-size: 12px; color: #656d76; }
  ul { list-style: none; margin: 0; padding: 0; max-height: 60vh; overflow: auto; }
  li { padding: 8px 12px; border-bottom: 1px solid #eaeef2; cursor: pointer; }
  li.unread { background: #ddf4ff; }
  li .title { font-weight: 600; }
  li .body { color: #656d76; }
  .empty { padding: 16px 12px; color: #656d76; }
  a, button.link { color: #0969da; background: none; border: 0; cursor: pointer; font: inherit; padding: 0; }
`;

/** The claims of a JWT, unverified: the page only needs `sub` and `exp`; the service verifies. */
function claimsOf(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
}

class NotifyInbox extends HTMLElement {
  constructor() {
    super();
    this._token = null;
    this._renewal = null;
    this._client = null;
    this._items = []; // newest first, at most LATEST
    this._root = this.attachShadow({ mode: "open" });
  }

  get server() {
    return new URL(this.getAttribute("server") || location.origin).origin;
  }

  get unread() {
    return this._client ? this._client.unread : 0;
  }

  get state() {
    return this._client ? this._client.state : State.OFFLINE;
  }

  async connectedCallback() {
    this._render();
    try {
      await this._renewToken();
    } catch (e) {
      this._showState("sign-in needed");
      console.error("notify-inbox: no connection token", e);
      return;
    }
    const { sub } = claimsOf(this._token);
    this._client = new NotificationClient({
      url: `${this.server.replace(/^http/, "ws")}/ws/notifications/`,
      userId: `${this.server} ${sub}`, // the stored cursor and the tab leader are per service and user
      token: () => this._token,
    });
    this._client.on("notification", (n) => this._add(n));
    this._client.on("unreadcount", ({ unread }) => this._showCount(unread));
    this._client.on("read", (event) => this._markedRead(event));
    this._client.on("state", ({ state }) => this._showState(state));
    this._client.on("reset", () => this._loadLatest());
    this._client.on("unauthenticated", () => this._reauthenticate());
    await this._loadLatest();
    this._client.connect();
  }

  disconnectedCallback() {
    clearTimeout(this._renewal);
    this._client?.close();
  }

  // --- the token -----------------------------------------------------------------------

  async _renewToken() {
    const response = await fetch(this.getAttribute("token-url"), { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`token-url answered ${response.status}`);
    const { token } = await response.json();
    this._token = token;
    const { exp } = claimsOf(token);
    const life = exp - Date.now() / 1000;
    const renewIn = Math.max(5, Math.min(life - RENEW_BEFORE_S, life * RENEW_AT_FRACTION));
    clearTimeout(this._renewal);
    this._renewal = setTimeout(() => this._renewToken().catch((e) => console.error("notify-inbox: renewing the token failed", e)), renewIn * 1000);
  }

  async _reauthenticate() {
    // The service closed 4401 (the token expired while the tab slept, say): one fresh token, then connect again.
    try {
      await this._renewToken();
    } catch (e) {
      this._showState("sign-in needed");
      return;
    }
    this._client.connect();
  }

  async _loadLatest() {
    const response = await fetch(`${this.server}/api/v1/me/notifications?limit=${LATEST}`, {
      headers: { Authorization: `Bearer ${this._token}` },
    });
    if (!response.ok) return;
    const page = await response.json();
    this._items = page.items;
    this._showCount(page.unread);
    this._renderList();
  }

  // --- events ------------------------------------------------------------------------

  _add(n) {
    if (this._items.some((item) => item.seq === n.seq)) return;
    this._items = [n, ...this._items].sort((a, b) => b.seq - a.seq).slice(0, LATEST);
    this._renderList();
    this.dispatchEvent(new CustomEvent("notification", { detail: n }));
  }

  _markedRead({ ids, up_to_seq: upTo }) {
    for (const item of this._items) {
      if ((ids && ids.includes(item.id)) || (upTo != null && item.seq <= upTo)) item.read = true;
    }
    this._renderList();
  }

  _open(item) {
    if (!item.read) this._client.markRead([item.id]).catch(() => {}); // a read the socket missed is sent again on resume
    item.read = true;
    this._renderList();
    const link = safeLink(item.url);
    if (link) location.assign(new URL(link, this.server).href);
  }

  // --- rendering -----------------------------------------------------------------------

  _render() {
    const style = document.createElement("style");
    style.textContent = STYLE;
    const bell = document.createElement("button");
    bell.className = "bell";
    bell.setAttribute("aria-label", "Notifications");
    bell.setAttribute("aria-expanded", "false");
    bell.textContent = "\u{1F514}";
    this._count = document.createElement("span");
    this._count.className = "count";
    this._count.hidden = true;
    bell.append(this._count);

    this._panel = document.createElement("div");
    this._panel.className = "panel";
    this._panel.hidden = true;
    const header = document.createElement("header");
    const heading = document.createElement("span");
    heading.textContent = "Notifications";
    this._state = document.createElement("span");
    this._state.className = "state";
    header.append(heading, this._state);
    this._list = document.createElement("ul");
    const footer = document.createElement("footer");
    const readAll = document.createElement("button");
    readAll.className = "link";
    readAll.textContent = "Mark all read";
    readAll.addEventListener("click", () => this._client?.markAllRead().catch(() => {}));
    const preferences = document.createElement("a");
    preferences.textContent = "Preferences";
    preferences.href = this.getAttribute("preferences-url") || `${this.server}/preferences/`;
    preferences.target = "_blank";
    preferences.rel = "noopener";
    footer.append(readAll, preferences);
    this._panel.append(header, this._list, footer);

    bell.addEventListener("click", () => {
      this._panel.hidden = !this._panel.hidden;
      bell.setAttribute("aria-expanded", String(!this._panel.hidden));
    });
    this._root.append(style, bell, this._panel);
    this._renderList();
  }

  _renderList() {
    if (!this._list) return;
    this._list.replaceChildren(
      ...(this._items.length
        ? this._items.map((item) => {
            const li = document.createElement("li");
            li.className = item.read ? "read" : "unread";
            li.dataset.seq = String(item.seq);
            const title = document.createElement("div");
            title.className = "title";
            title.textContent = item.title;
            const body = document.createElement("div");
            body.className = "body";
            body.textContent = item.body || "";
            li.append(title, body);
            li.addEventListener("click", () => this._open(item));
            return li;
          })
        : [Object.assign(document.createElement("li"), { className: "empty", textContent: "Nothing yet" })]),
    );
  }

  _showCount(unread) {
    this._count.textContent = unread > 99 ? "99+" : String(unread);
    this._count.hidden = unread === 0;
    this.dataset.unread = String(unread);
  }

  _showState(state) {
    this._state.textContent = state === State.LIVE ? "" : state;
    this.dataset.state = state;
  }
}

if (!customElements.get("notify-inbox")) customElements.define("notify-inbox", NotifyInbox);
