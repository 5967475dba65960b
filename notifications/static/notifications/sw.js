// The service worker for Web Push (docs/channels.md): shows a pushed notification, and on click
// focuses an open dashboard tab or opens the notification's link. Text is shown as text only.
// An ES module (away.js registers it with type "module"): the link rule is the page's own, links.js.
import { safeLink } from "./links.js";

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: event.data ? event.data.text() : "New notification" };
  }
  const url = safeLink(data.url) || "/inbox/";
  event.waitUntil(
    self.registration.showNotification(String(data.title || "New notification"), {
      body: String(data.body || ""),
      tag: `notify-${data.seq ?? ""}`,
      data: { url },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(safeLink(event.notification.data?.url) || "/inbox/", self.location.origin).href;
  event.waitUntil(
    (async () => {
      const tabs = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const same = tabs.find((tab) => tab.url === target) || tabs.find((tab) => new URL(tab.url).origin === self.location.origin);
      if (same) {
        if (same.url !== target && "navigate" in same) await same.navigate(target);
        return same.focus();
      }
      return self.clients.openWindow(target);
    })(),
  );
});
