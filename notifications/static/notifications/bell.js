/**
 * The bell of `{% notifications_bell %}` on a host's page: the unread count and the
 * latest notifications, live. The page's session authenticates both the HTTP API
 * read and the socket (same origin). The initial state is one API page; the client
 * connects with since = its head_seq, so every later notification arrives as an event.
 * Notification text only ever goes through textContent.
 */
import { NotificationClient } from "./client.js";
import { safeLink } from "./links.js";

class Bell {
  constructor(root) {
    this.root = root;
    this.api = root.dataset.api;
    this.limit = Number(root.dataset.limit) || 5;
    this.count = root.querySelector("[data-count]");
    this.list = root.querySelector("[data-list]");
    this.empty = root.querySelector("[data-empty]");
    this.menu = root.querySelector("[data-menu]");
    this.button = root.querySelector("button");
    this.shown = new Set(); // ids in the list: the API page and a replay may overlap
    this.button.addEventListener("click", () => this.toggle());
  }

  async start() {
    const response = await fetch(`${this.api}me/notifications?limit=${this.limit}`, { credentials: "same-origin" });
    if (!response.ok) return; // logged out meanwhile: no bell
    const page = await response.json();
    for (const n of [...page.items].reverse()) this.add(n);
    this.setCount(page.unread);
    this.client = new NotificationClient({ userId: this.root.dataset.user, since: page.head_seq });
    this.client.on("notification", (n) => this.add(n));
    this.client.on("unreadcount", ({ unread }) => this.setCount(unread));
    this.client.connect();
    this.root.dataset.state = "live";
  }

  toggle() {
    const open = this.menu.hidden;
    this.menu.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
  }

  setCount(unread) {
    this.count.textContent = unread > 99 ? "99+" : String(unread);
    this.count.hidden = unread === 0;
    this.root.dataset.unread = String(unread);
  }

  add(n) {
    if (this.shown.has(n.id)) return;
    this.shown.add(n.id);
    const item = document.createElement("li");
    item.dataset.id = String(n.id);
    item.className = n.read ? "read" : "unread";
    const href = safeLink(n.url);
    const title = document.createElement(href ? "a" : "span");
    if (href) title.href = href;
    title.textContent = n.title;
    item.append(title);
    if (n.body) {
      const body = document.createElement("small");
      body.textContent = n.body;
      item.append(body);
    }
    this.list.prepend(item);
    while (this.list.children.length > this.limit) this.list.lastElementChild.remove();
    this.empty.hidden = true;
  }
}

for (const root of document.querySelectorAll("[data-notifications-bell]")) {
  new Bell(root).start();
}
