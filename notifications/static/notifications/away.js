/**
 * While the user is away from the tab: the unread count in the tab title, an OS notification
 * while the tab is hidden (opt-in), and the button that enables notifications and Web Push
 * (permission asked on its click, never on load). docs/channels.md.
 */
const SW_URL = new URL("./sw.js", import.meta.url);

function b64urlToBytes(value) {
  const padded = (value + "=".repeat((4 - (value.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function csrfToken() {
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

/** POST a PushSubscription (its toJSON()) to the API; exported for the browser tests. */
export async function postSubscription(url, subscription) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(subscription),
  });
  if (!response.ok) throw new Error(`push subscription: ${response.status}`);
  return response.json();
}

export function setupTitle(client) {
  const base = document.title;
  const show = (unread) => {
    document.title = unread > 0 ? `(${unread}) ${base}` : base;
  };
  client.on("unreadcount", ({ unread }) => show(unread));
  show(Number(document.getElementById("unread-count")?.textContent || 0));
}

export function setupHiddenTabNotifications(client) {
  client.on("notification", (n) => {
    if (!document.hidden || !("Notification" in globalThis) || Notification.permission !== "granted" || n.read) return;
    const shown = new Notification(String(n.title), { body: String(n.body || ""), tag: `notify-${n.seq}` });
    shown.onclick = () => {
      globalThis.focus();
      shown.close();
    };
  });
}

export function setupEnableButton(config) {
  const button = document.getElementById("enable-notifications");
  const status = document.getElementById("push-status");
  if (!button) return;
  const say = (text) => {
    status.textContent = text;
  };
  if (!("Notification" in globalThis)) {
    button.disabled = true;
    say("This browser cannot show notifications.");
    return;
  }
  if (Notification.permission === "granted") say("Notifications are on in this browser.");
  button.addEventListener("click", async () => {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      say("Notifications are blocked for this site.");
      return;
    }
    if (!("serviceWorker" in navigator) || !config.vapidPublicKey) {
      say("Notifications are on while a tab is open.");
      return;
    }
    try {
      const registration = await navigator.serviceWorker.register(SW_URL, { type: "module" });
      globalThis.notifyServiceWorker = registration;
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: b64urlToBytes(config.vapidPublicKey),
      });
      await postSubscription(config.urls.pushSubscriptions, subscription.toJSON());
      say("Notifications are on, also while this browser is closed.");
    } catch (error) {
      say(`Notifications are on while a tab is open (push unavailable: ${error.message}).`);
    }
  });
}
