/**
 * One socket for every tab of a user: the relay between the leader's socket and the other
 * tabs (docs/client.md, "Tabs"), over the election of tabs.js.
 *
 * The leader posts every frame its socket receives, with its cursor before it; each
 * tab applies them with its own cursor, so each keeps its own de-duplication and gaps.
 * Followers post to the leader what they would send (read marks, requests, a resume
 * when they are behind it). Messages: {k: "frames" | "opening" | "socket" | "closed" |
 * "status" | "refused"} from the leader, {k: "hello" | "send" | "reconnect"} to it.
 */

import { TabGroup } from "./tabs.js";

/** Who holds the socket: this client alone, this tab for every tab of the user, or another tab. */
export const Role = Object.freeze({ SOLO: "solo", LEADER: "leader", FOLLOWER: "follower" });

/**
 * The relay of one client (client.js owns one while it shares its socket). `host` is that
 * client, as the callbacks the relay calls:
 *
 * - the election: `lead()` this tab holds the socket now; `follow(wasLeader)` another tab does.
 * - on the leader: `status()` where its socket stands, for a tab that joins; `send(frame)`
 *   a follower's frame onto the socket (false: no socket); `reconnect()` a follower's
 *   reconnectNow().
 * - on a follower: `frames(data)` a message of the leader's socket; `opening()` it opens a
 *   socket; `socketState(body)` its state (connecting, offline); `closed(code, reason)`;
 *   `joined(status)` the leader's status; `refused(ref)` a request it could not send.
 */
export class TabRelay {
  constructor(name, host) {
    this.role = Role.FOLLOWER; // until the election says otherwise
    this.leaderCursor = null; // a follower: the leader's cursor before the frame being relayed
    this._host = host;
    this._group = new TabGroup(name, {
      lead: () => this._lead(),
      follow: (leader) => this._follow(leader),
      message: (body, from) => (this.role === Role.LEADER ? this._fromFollower(body, from) : this._fromLeader(body)),
    });
  }

  /** This tab's id, and the leader's (null while none is known). */
  get id() {
    return this._group.id;
  }

  get leader() {
    return this._group.leader;
  }

  start() {
    this._group.start();
  }

  /** Leave the election: another tab takes over if this one leads. */
  leave() {
    this._group.leave();
  }

  // --- the leader tells every tab about its socket ---------------------------------------

  shareFrames(data, cursorBefore) {
    if (this.role === Role.LEADER) this._group.post({ k: "frames", data, base: cursorBefore });
  }

  shareOpening() {
    if (this.role === Role.LEADER) this._group.post({ k: "opening" });
  }

  /** `payload`: the `state` event's (connecting, offline: a follower works out the others itself). */
  shareSocketState(payload) {
    if (this.role === Role.LEADER) this._group.post({ k: "socket", ...payload });
  }

  shareClosed(code, reason) {
    if (this.role === Role.LEADER) this._group.post({ k: "closed", code, reason });
  }

  // --- a follower asks the leader ----------------------------------------------------------

  sendThroughLeader(frame) {
    this._group.post({ k: "send", frame }, this._group.leader);
    return true;
  }

  reconnectThroughLeader() {
    this._group.post({ k: "reconnect" }, this._group.leader);
  }

  // --- the election and the messages ---------------------------------------------------------

  _lead() {
    this._forgetLeader();
    this.role = Role.LEADER;
    this._host.lead();
  }

  _follow(leader) {
    const wasLeader = this.role === Role.LEADER;
    this.role = Role.FOLLOWER;
    this._forgetLeader();
    this._host.follow(wasLeader);
    this._group.post({ k: "hello" }, leader);
  }

  /** What this tab knew of the last leader's socket: a new socket brings it again. */
  _forgetLeader() {
    this.leaderCursor = null;
  }

  _fromFollower(body, from) {
    switch (body.k) {
      case "hello":
        return this._group.post({ k: "status", ...this._host.status() }, from);
      case "send":
        if (!this._host.send(body.frame) && body.frame.ref !== undefined) this._group.post({ k: "refused", ref: body.frame.ref }, from);
        return undefined;
      case "reconnect":
        return this._host.reconnect();
      default:
        return undefined;
    }
  }

  _fromLeader(body) {
    switch (body.k) {
      case "frames":
        this.leaderCursor = body.base;
        return this._host.frames(body.data);
      case "opening":
        this._forgetLeader();
        return this._host.opening();
      case "socket":
        return this._host.socketState(body);
      case "closed":
        this._forgetLeader();
        return this._host.closed(body.code, body.reason);
      case "status":
        this.leaderCursor = body.cursor;
        return this._host.joined(body);
      case "refused":
        return this._host.refused(body.ref);
      default:
        return undefined;
    }
  }
}
