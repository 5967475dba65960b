/** Connection states of client.js, in the order a healthy connection goes through them. */
export const State = Object.freeze({
  CONNECTING: "connecting", // opening the socket, or waiting for `welcome`
  SYNCING: "syncing", // connected, replaying what was missed
  LIVE: "live", // connected and caught up
  OFFLINE: "offline", // no socket: retrying after `retryIn` s, or waiting (network down, logged out, closed)
});
