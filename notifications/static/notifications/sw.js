// The service worker for Web Push (docs/channels.md): shows a pushed notification with its action
// buttons, and on click focuses an open dashboard tab or opens the notification's link (or the
// button's), or answers with a button that is an answer. Text is shown as text only.
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
    token: a.url ? "" : String(a.token || ""), // signed by the server for this user, notification and action
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

const ACTION = "/action/"; // the one-click answer (away_views.action): the signed token is the proof, no session needed

/**
 * A button without a url is the user's answer to the notification: POSTed here with the token the
 * push carried for it, as the user would answer on any device (the first answer stands). Answered,
 * nothing opens. Refused (answered already, elsewhere), or not sent (offline, no token), the inbox
 * opens, where the notification shows the answer that stands or the same button answers.
 */
async function answerFromPush(button) {
  if (button.token) {
    try {
      const response = await fetch(ACTION, {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams({ token: button.token }),
        credentials: "omit",
      });
      if (response.ok) return undefined;
    } catch {
      // offline: the inbox answers once the page is back
    }
  }
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
    event.waitUntil(answerFromPush(button));
    return;
  }
  const target = new URL(safeLink(button ? button.url : data.url) || INBOX, self.location.origin).href;
  event.waitUntil(openOrFocus(target));
});
