/**
 * The dashboard's behaviour on top of client.js: the header's badge and connection
 * indicator on every page, the live inbox list, and the ops figures.
 *
 * The page is the initial state (rendered up to head_seq); the client connects with
 * since=head_seq and every event is applied to it (Zulip's model). Notification text
 * only ever goes through textContent; a link only for http(s) or a same-site path.
 */
import { NotificationClient, State } from "./client.js";
import { setupEnableButton, setupHiddenTabNotifications, setupTitle } from "./away.js";
import { groupRows, renderActions, renderGroup, setupItemParts } from "./item-parts.js";
import { takenByFilter } from "./inbox-state.js";
import { safeLink } from "./links.js";
import { setupOps } from "./ops.js";

const config = JSON.parse(document.getElementById("notify-config").textContent);
const client = new NotificationClient({ userId: config.userId, since: config.headSeq });
globalThis.notifyClient = client; // for the console and the browser tests

const timeFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

function formatTime(el) {
  const when = new Date(el.getAttribute("datetime"));
  if (!Number.isNaN(when.getTime())) {
    el.textContent = timeFormat.format(when);
    el.title = when.toLocaleString();
  }
}

function csrfToken() {
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

async function postForm(url, data) {
  const response = await fetch(url, {
    method: "POST",
    body: data,
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// --- header: badge and connection indicator ---------------------------------------------

function setupHeader() {
  const badge = document.getElementById("unread-badge");
  const count = document.getElementById("unread-count");
  const indicator = document.getElementById("connection");
  const text = document.getElementById("connection-text");
  const status = document.getElementById("connection-status");
  if (!badge || !indicator) return;

  const showUnread = (unread) => {
    if (count.textContent === String(unread)) return;
    count.textContent = String(unread);
    badge.dataset.count = String(unread);
  };
  client.on("unreadcount", ({ unread }) => showUnread(unread));
  client.on("unreadcount", ({ unread }) => showReadAll(unread));

  let wasLive = false;
  client.on("state", ({ state, retryIn, reason }) => {
    let label;
    let look = state;
    if (state === State.LIVE) {
      label = "Live";
      wasLive = true;
    } else if (state === State.SYNCING) {
      label = "Syncing…";
    } else if (state === State.CONNECTING) {
      label = wasLive || client.attempt > 0 ? "Reconnecting…" : "Connecting…";
      if (wasLive || client.attempt > 0) look = "reconnecting";
    } else if (retryIn !== null) {
      label = `Reconnecting in ${retryIn} s`;
      look = "reconnecting";
    } else if (reason === "unauthenticated") {
      label = "Logged out";
    } else {
      label = "Offline";
    }
    indicator.dataset.state = look;
    text.textContent = label;
    // Screen readers hear a change of state, not every tick of the countdown.
    const spoken = look === "reconnecting" ? "Connection lost, reconnecting" : label;
    if (status.textContent !== spoken) status.textContent = spoken;
    renderLoginHint(indicator, reason === "unauthenticated");
    // Waiting out a backoff, or offline: the user may know better than the timer.
    renderRetry(indicator, state === State.OFFLINE && !NO_RETRY_REASONS.has(reason));
  });
}

// Offline for good, until a new login or page: retrying would not help.
const NO_RETRY_REASONS = new Set(["unauthenticated", "forbidden", "closed", "closed by the page"]);

function renderRetry(indicator, show) {
  let button = document.getElementById("retry-now");
  if (!show) {
    button?.remove();
    return;
  }
  if (button) return;
  button = document.createElement("button");
  button.id = "retry-now";
  button.type = "button";
  button.className = "link-button";
  button.textContent = "Retry now";
  button.addEventListener("click", () => client.reconnectNow());
  indicator.after(button);
}

function renderLoginHint(indicator, show) {
  let link = document.getElementById("login-again");
  if (!show) {
    link?.remove();
    return;
  }
  if (link) return;
  link = document.createElement("a");
  link.id = "login-again";
  link.href = `${config.urls.login}?next=${encodeURIComponent(location.pathname + location.search)}`;
  link.textContent = "Log in again";
  indicator.after(link);
}

/** "Mark all read" is the inbox's main action only while there is something to mark. */
function showReadAll(unread) {
  const button = document.getElementById("read-all");
  if (!button) return;
  button.disabled = unread === 0;
  button.classList.toggle("secondary", unread === 0);
}

// --- inbox -------------------------------------------------------------------------------

function setupInbox() {
  const list = document.getElementById("notification-list");
  const template = document.getElementById("item-template");
  const empty = document.getElementById("empty");
  const notice = document.getElementById("sync-notice");
  const loadOlder = document.getElementById("load-older");
  const readAll = document.getElementById("read-all-form");
  const filters = config.filters || {};
  let noticeTimer = null;

  const items = () => list.querySelectorAll(":scope > li.item");
  const byId = (id) => list.querySelector(`:scope > li.item[data-id="${Number(id)}"]`);
  const matches = (n) => (!filters.topic || n.topic === filters.topic) && (!filters.unread || !n.read);

  // In the list a notification with a group_key is its group's row (its latest); under that row, a member.
  function render(n, { member = false } = {}) {
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.id = String(n.id);
    li.dataset.seq = String(n.seq);
    li.dataset.topic = n.topic || "";
    li.dataset.kind = n.kind || "";
    li.className = `item level-${/^[a-z]+$/.test(n.level) ? n.level : "info"}`;
    const fields = (name) => li.querySelectorAll(`[data-field="${name}"]`);
    for (const el of fields("title")) el.textContent = n.title;
    const body = fields("body")[0];
    body.textContent = n.body || "";
    body.hidden = !n.body;
    const topic = fields("topic")[0];
    topic.textContent = n.topic || "";
    topic.hidden = !n.topic;
    const level = fields("level")[0];
    level.textContent = n.level;
    level.hidden = !n.level || n.level === "info";
    const time = fields("created_at")[0];
    time.setAttribute("datetime", n.created_at);
    formatTime(time);
    const link = fields("link")[0];
    const href = safeLink(n.url);
    if (href) link.setAttribute("href", href);
    else link.removeAttribute("href");
    link.hidden = !href;
    fields("id")[0].value = String(n.id);
    const next = li.querySelector("input[name=next]");
    if (next) next.value = location.pathname + location.search;
    renderActions(li, n.actions, n.answer);
    renderGroup(li, member ? null : n.group || (n.group_key ? { key: n.group_key, more: 0 } : null));
    setRead(li, Boolean(n.read) && !(n.group?.unread > 0));
    return li;
  }

  const { byGroup, refreshGroup } = groupRows(items, { fetchPage: (extra) => fetchPage(undefined, extra), render });

  function setRead(li, read) {
    li.dataset.read = read ? "true" : "false";
    li.classList.toggle("unread", !read);
    const form = li.querySelector("form.read-form");
    if (form) form.hidden = read;
  }

  function insert(li) {
    const seq = Number(li.dataset.seq);
    for (const other of items()) {
      if (Number(other.dataset.seq) < seq) {
        list.insertBefore(li, other);
        return;
      }
    }
    list.appendChild(li);
  }

  function add(n) {
    if (!matches(n) || byId(n.id)) return;
    const older = n.group_key ? byGroup(n.group_key) : undefined;
    if (older && Number(older.dataset.seq) > n.seq) return; // an older member: its row stands already
    older?.remove(); // the group's row is its latest now
    insert(render(n));
    empty.hidden = true;
    if (n.group_key && !n.group) refreshGroup(n.group_key).catch(() => {});
  }

  function replaceAll(page) {
    for (const li of items()) li.remove();
    for (const n of page.items) add(n);
    empty.hidden = items().length > 0;
    loadOlder.hidden = !page.more;
  }

  function showNotice(message) {
    notice.textContent = message;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      notice.hidden = true;
    }, 15000);
  }

  async function fetchPage(before, extra = {}) {
    const params = new URLSearchParams(extra);
    if (before) params.set("before", String(before));
    if (filters.topic) params.set("topic", filters.topic);
    if (filters.unread) params.set("unread", "1");
    const response = await fetch(`${config.urls.items}?${params}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`inbox page: ${response.status}`);
    return response.json();
  }

  client.on("notification", (n) => add(n));
  setupItemParts(list, {
    client,
    fetchMembers: (key) => fetchPage(undefined, { group: key }),
    renderMember: (n) => render(n, { member: true }),
  });
  // A change on some device of the user (this one too): the list shows the inbox, so what leaves it goes.
  const shown = (li) => ({ seq: Number(li.dataset.seq), topic: li.dataset.topic || null, kind: li.dataset.kind, archived: false });
  // A group's row is read when all of it is: the server counts.
  const markRow = (li, read) => (li.dataset.group ? refreshGroup(li.dataset.group).catch(() => {}) : setRead(li, read));
  const OP_ON_ITEM = {
    read: (li) => markRow(li, true),
    unread: (li) => markRow(li, false),
    action: (li) => markRow(li, true), // an answer marks read; item-parts.js shows the answer
    archive: (li) => li.remove(),
    snooze: (li) => li.remove(),
    delete: (li) => li.remove(),
  };
  client.on("change", ({ op, frame, changed }) => {
    if (op === "wake") {
      // A snooze that woke: back at the top, as new.
      byId(frame.id)?.remove();
      add(changed[0]);
      return;
    }
    const onItem = OP_ON_ITEM[op];
    if (!onItem) return;
    const named = Array.isArray(frame.ids) ? frame.ids : frame.notification != null ? [frame.notification] : null;
    const taken = named ? named.map(byId).filter(Boolean) : [...items()].filter((li) => takenByFilter(shown(li), frame));
    for (const li of taken) onItem(li);
    empty.hidden = items().length > 0;
  });
  let readStateSeen = false;
  client.on("welcome", () => {
    readStateSeen = false;
  });
  client.on("read_state", (frame) => {
    // Of the seqs up to up_to_seq exactly these are unread (if truncated: at least these).
    readStateSeen = true;
    const unread = new Set(frame.unread_ids || []);
    for (const li of items()) {
      if (Number(li.dataset.seq) > frame.up_to_seq) continue;
      const isUnread = unread.has(Number(li.dataset.id));
      if (isUnread || !frame.truncated) setRead(li, !isUnread);
    }
  });
  client.on("state", ({ state }) => {
    list.setAttribute("aria-busy", state === State.SYNCING ? "true" : "false");
  });
  client.on("synced", async ({ replayed, reconnect, outage }) => {
    if (outage && replayed > 0) {
      showNotice(`Restored ${replayed} missed notification${replayed === 1 ? "" : "s"}.`);
    }
    if (reconnect && !readStateSeen) {
      // A server without read_state: read marks made elsewhere while we were away
      // are not replayed, so take them from a fresh page.
      // Only read=true is applied: an older answer must not undo a read event that came meanwhile.
      try {
        const page = await fetchPage();
        for (const n of page.items) {
          const li = byId(n.id);
          if (li && n.read) setRead(li, true);
        }
      } catch {
        /* the next reconnect tries again */
      }
    }
  });
  client.on("reset", async () => {
    try {
      replaceAll(await fetchPage());
      showNotice("Your inbox was reloaded.");
    } catch {
      location.reload();
    }
  });

  async function markRead(ids) {
    try {
      await client.markRead(ids);
    } catch {
      const data = new FormData();
      for (const id of ids) data.append("id", String(id));
      const result = await postForm(config.urls.read, data);
      if (typeof result.unread === "number") client.setUnread(result.unread);
    }
  }

  list.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.read-form");
    if (!form) return;
    event.preventDefault();
    const li = form.closest("li.item");
    const id = Number(li.dataset.id);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      if (li.dataset.group) {
        // A group's row marks every member read: the server knows which they are.
        const result = await postForm(config.urls.read, new FormData(form));
        if (typeof result.unread === "number") client.setUnread(result.unread);
      } else {
        await markRead([id]);
      }
      setRead(li, true);
      li.setAttribute("tabindex", "-1");
      li.focus(); // the button is gone: keep keyboard focus on the item
    } catch {
      form.submit(); // last resort: the plain form post
    } finally {
      button.disabled = false;
    }
  });

  readAll.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = readAll.querySelector("button");
    button.disabled = true;
    try {
      try {
        await client.markAllRead();
      } catch {
        const result = await postForm(config.urls.read, new FormData(readAll));
        if (typeof result.unread === "number") client.setUnread(result.unread);
      }
      for (const li of items()) setRead(li, true);
    } catch {
      readAll.submit();
    } finally {
      showReadAll(client.unread);
    }
  });

  loadOlder.addEventListener("click", async () => {
    const seqs = [...items()].map((li) => Number(li.dataset.seq));
    const before = seqs.length ? Math.min(...seqs) : undefined;
    loadOlder.disabled = true;
    try {
      const page = await fetchPage(before);
      for (const n of page.items) if (!byId(n.id)) list.appendChild(render(n));
      empty.hidden = items().length > 0;
      loadOlder.hidden = !page.more;
    } finally {
      loadOlder.disabled = false;
    }
  });
}

// --- compose: show the fields the chosen audience needs ---------------------------------------

function setupCompose() {
  const audience = document.querySelector("select[name=audience]");
  if (!audience) return;
  const show = () => {
    document.querySelector('[data-field-name="usernames"]').hidden = audience.value !== "users";
    document.querySelector('[data-field-name="topic"]').hidden = audience.value !== "topic";
  };
  audience.addEventListener("change", show);
  show();
}

for (const el of document.querySelectorAll("time[datetime]")) formatTime(el);
setupHeader();
setupTitle(client);
setupHiddenTabNotifications(client);
if (config.page === "preferences") setupEnableButton(config);
if (config.page === "inbox") setupInbox();
if (config.page === "compose") setupCompose();
if (config.page === "ops") setupOps();
client.connect();
