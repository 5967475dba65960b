// The service worker for Web Push (docs/channels.md): shows a pushed notification with its action
// buttons, and on click focuses an open dashboard tab or opens the notification's link (or the
// button's). Text is shown as text only.
// An ES module (away.js registers it with type "module"): the link rule is the page's own, links.js.
import { safeLink } from "./links.js";

const INBOX = "/inbox/";

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: event.data ? event.data.text() : "New notification" };
  }
  const url = safeLink(data.url) || INBOX;
  // Browsers show a few buttons at most (Chromium: 2); the dashboard shows every one.
  const max = self.Notification?.maxActions ?? 2;
  const actions = (Array.isArray(data.actions) ? data.actions : []).slice(0, max).map((a) => ({
    id: String(a.id),
    label: String(a.label),
    url: a.url ? safeLink(a.url) || INBOX : "",
  }));
  event.waitUntil(
    self.registration.showNotification(String(data.title || "New notification"), {
      body: String(data.body || ""),
      tag: `notify-${data.seq ?? ""}`,
      data: { url, seq: data.seq, actions },
      actions: actions.map((a) => ({ action: a.id, title: a.label })),
    }),
  );
});

/**
 * A button without a url is the user's answer to the notification. Sending it from here (an `action`
 * with its seq and the button's id) is wired later; until then the inbox opens, where the same
 * button answers.
 */
function answerFromPush(seq, actionId) {
  return openOrFocus(new URL(INBOX, self.location.origin).href);
}

async function openOrFocus(target) {
  const tabs = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const same = tabs.find((tab) => tab.url === target) || tabs.find((tab) => new URL(tab.url).origin === self.location.origin);
  if (same) {
    if (same.url !== target && "navigate" in same) await same.navigate(target);
    return same.focus();
  }
  return self.clients.openWindow(target);
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const button = event.action ? (data.actions || []).find((a) => a.id === event.action) : undefined;
  if (button && !button.url) {
    event.waitUntil(answerFromPush(data.seq, button.id));
    return;
  }
  const target = new URL(safeLink(button ? button.url : data.url) || INBOX, self.location.origin).href;
  event.waitUntil(openOrFocus(target));
});
