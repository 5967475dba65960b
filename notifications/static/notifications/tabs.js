/**
 * One tab leads: the election behind client.js's shared socket (docs/client.md, "Tabs").
 *
 * The tabs of one origin that share a `name` (client.js: one per user) meet on a
 * BroadcastChannel. The leader is the tab holding the Web Lock of that name, held
 * for the tab's life: when the tab closes the browser hands the lock to a tab
 * still waiting for it, which announces itself. Without Web Locks the leader
 * announces itself every second, and a tab that hears no leader for three seconds
 * claims the lead: it leads only if no older tab claimed within the next 200 ms, so
 * that two tabs claiming at once do not both open a socket.
 *
 * No frame of the protocol is known here: tab-relay.js says what to post.
 */

const ANNOUNCE_MS = 1000; // fallback: how often the leader says it is alive
const LEASE_MS = 3000; // fallback: silence after which the leader is presumed gone
const PROBE_MS = 200; // fallback: how long a new tab listens for a leader before it claims, and a claim for rivals

export function tabsSupported() {
  return typeof globalThis.BroadcastChannel === "function";
}

// Ordered by creation time first: in the fallback, the oldest tab wins a tie.
function newId() {
  return `${Date.now().toString(36).padStart(9, "0")}-${Math.random().toString(36).slice(2, 8)}`;
}

export class TabGroup {
  /**
   * `lead()`: this tab is the leader now. `follow(id)`: tab `id` is (now) the leader,
   * perhaps in place of this one. `message(body, from)`: a body another tab posted:
   * a follower hears only its leader, the leader only what is addressed to it.
   */
  constructor(name, { lead, follow, message }) {
    this.id = newId();
    this.leader = null;
    this._name = name;
    this._on = { lead, follow, message };
    this._locks = globalThis.navigator?.locks ?? null;
    this._channel = null;
    this._heardAt = 0;
    this._timer = null;
    this._claimTimer = null; // fallback: set while this tab's claim waits for an older rival
    this._claimHeardAt = 0; // fallback: when another tab last claimed
    this._abort = null;
    this._release = null;
    this._onPageHide = () => this._resign();
  }

  get leading() {
    return this.leader === this.id;
  }

  start() {
    this._channel = new BroadcastChannel(this._name);
    this._channel.onmessage = (event) => this._receive(event.data);
    globalThis.addEventListener?.("pagehide", this._onPageHide);
    this._post({ tabs: "who" }); // a leader answers at once
    if (this._locks) this._requestLock();
    else this._timer = setTimeout(() => this._watch(), PROBE_MS);
  }

  /** Leave the group: another tab takes over if this one leads. */
  leave() {
    this._resign();
    this._abort?.abort();
    this._release?.();
    this._stopTimer();
    this._dropClaim();
    globalThis.removeEventListener?.("pagehide", this._onPageHide);
    this._channel?.close();
    this._channel = null;
    this.leader = null;
  }

  /** Post `body` to the leader (`to`: its id) or, from the leader, to every tab (`to`: null) or one. */
  post(body, to = null) {
    this._post({ tabs: "msg", to, body });
  }

  _post(message) {
    this._channel?.postMessage({ ...message, from: this.id });
  }

  _receive(message) {
    switch (message.tabs) {
      case "who":
        if (this.leading) this._announce();
        return;
      case "lead":
        return this._heard(message.from);
      case "claim":
        return this._claimed(message.from);
      case "resign":
        if (message.from === this.leader && !this._locks) {
          // Fallback: claim after a random moment, so that not every tab claims at once.
          this.leader = null;
          setTimeout(() => this._watch(), Math.random() * PROBE_MS);
        }
        return;
      case "msg":
        if (this._isForMe(message)) this._on.message(message.body, message.from);
        return;
      default:
        return;
    }
  }

  _isForMe({ from, to }) {
    if (this.leading) return to === this.id;
    return from === this.leader && (to === null || to === this.id);
  }

  _requestLock() {
    this._abort = new AbortController();
    this._locks
      .request(this._name, { signal: this._abort.signal }, () => {
        this._abort = null;
        if (!this._channel) return undefined; // left meanwhile: release at once
        this._lead();
        return new Promise((resolve) => {
          this._release = resolve; // held until leave() or the tab's end
        });
      })
      .catch(() => {}); // aborted by leave() while waiting
  }

  _heard(id) {
    const now = Date.now();
    if (id === this.leader) {
      this._heardAt = now;
    } else if (this._locks) {
      this._follow(id); // only the lock's holder announces itself
    } else if (this.leading) {
      // Fallback: two tabs claimed at once. The older one leads; the other hears it.
      if (id < this.id) this._follow(id);
      else this._announce();
    } else if (this.leader === null || id < this.leader || now - this._heardAt > LEASE_MS) {
      this._follow(id);
    }
  }

  _follow(id) {
    this._dropClaim();
    this.leader = id;
    this._heardAt = Date.now();
    if (!this._locks) this._setTimer(() => this._watch());
    this._on.follow(id);
  }

  _lead() {
    this.leader = this.id;
    this._announce();
    if (!this._locks) this._setTimer(() => this._announce());
    this._on.lead();
  }

  /** Fallback: the one timer of a tab, every ANNOUNCE_MS (a leader announces, a follower watches). */
  _setTimer(fn) {
    this._stopTimer();
    this._timer = setInterval(fn, ANNOUNCE_MS);
  }

  _stopTimer() {
    clearTimeout(this._timer); // clears an interval too: one list of timers
    this._timer = null;
  }

  /** Fallback: claim when no leader has been heard for a lease, nor another tab's claim. */
  _watch() {
    if (!this._channel || this.leading || this._claimTimer !== null) return;
    const now = Date.now();
    if (now - this._claimHeardAt < LEASE_MS) return; // that tab leads, or yields to an older one that does
    if (this.leader === null || now - this._heardAt > LEASE_MS) {
      this._post({ tabs: "claim" });
      this._claimTimer = setTimeout(() => {
        this._claimTimer = null;
        this._lead();
      }, PROBE_MS);
    }
  }

  /** Fallback: tab `id` claims the lead. The older of two claims wins; a leader answers that it is there. */
  _claimed(id) {
    if (this.leading) return this._announce();
    if (this._claimTimer !== null && id > this.id) return this._post({ tabs: "claim" }); // ours is older
    this._dropClaim();
    this._claimHeardAt = Date.now();
    return undefined;
  }

  _dropClaim() {
    clearTimeout(this._claimTimer);
    this._claimTimer = null;
  }

  _announce() {
    this._post({ tabs: "lead" });
  }

  _resign() {
    if (this.leading) this._post({ tabs: "resign" });
  }
}
