/**
 * The notifications client.js holds, with the `state` events applied to them in seq order
 * (docs/protocol.md, "Inbox state"). Ops set absolute state, never toggle: every device that
 * applies the same events in the same order holds what the server holds.
 *
 * An item is a notification frame plus `archived` (bool), `snoozed_until` (ISO text or null) and
 * `answer` (the id of the action answered, or null).
 * The rules (which view an item is in, which items a filter takes, what an op makes of an
 * item) are the Python client's too (notifications/client/inbox.py); tests/state_cases.json
 * holds both to the same cases.
 */

export const View = Object.freeze({ INBOX: "inbox", ARCHIVED: "archived", SNOOZED: "snoozed" });

/** Which list an item is shown in: the inbox (neither archived nor snoozed), the archive, or the snoozed. */
export function viewOf(item) {
  if (item.archived) return View.ARCHIVED;
  if (item.snoozed_until) return View.SNOOZED;
  return View.INBOX;
}

/** Whether a filter op's event takes this item: in the op's view, at or below up_to_seq, of its topic and kind prefix. */
export function takenByFilter(item, event) {
  const filter = event.filter || {};
  const view = event.op === "unarchive" || filter.archived ? View.ARCHIVED : View.INBOX;
  if (viewOf(item) !== view || item.seq > event.up_to_seq) return false;
  if (filter.topic != null && item.topic !== filter.topic) return false;
  // "build" takes "build" and "build.failed", not "builder".
  return filter.kind == null || item.kind === filter.kind || String(item.kind).startsWith(`${filter.kind}.`);
}

/** The item after an op (null: deleted). */
export function afterOp(item, event) {
  switch (event.op) {
    case "read":
      return { ...item, read: true };
    case "unread":
      return { ...item, read: false };
    case "archive":
      return { ...item, archived: true, snoozed_until: null }; // archiving ends a snooze
    case "unarchive":
      return { ...item, archived: false };
    case "snooze":
      return { ...item, snoozed_until: event.until, archived: false };
    case "delete":
      return null;
    case "action": // the first answer stands: the server sends one `action` event per notification
      return { ...item, read: true, answer: event.action };
    default:
      return item; // an op of a later protocol
  }
}

/** An item from a notification frame or an HTTP page's item (which says `archived_at`). */
export function itemOf(n) {
  return {
    ...n,
    read: Boolean(n.read),
    archived: Boolean(n.archived ?? n.archived_at),
    snoozed_until: n.snoozed_until ?? null,
    answer: n.answer ?? null,
  };
}

export class InboxState {
  /** `limit`: the most items held; past it the oldest (lowest seq) are let go. */
  constructor({ limit = 1000 } = {}) {
    this.seenSeq = 0;
    this._items = new Map(); // id -> item
    this._limit = limit;
  }

  get size() {
    return this._items.size;
  }

  get(id) {
    return this._items.get(Number(id)) ?? null;
  }

  /** What is held, newest first; of one view if given. */
  items(view = null) {
    const all = [...this._items.values()].sort((a, b) => b.seq - a.seq);
    return view === null ? all : all.filter((item) => viewOf(item) === view);
  }

  /** Items the page loaded itself (the rendered page, an HTTP page). What is held already keeps its own state. */
  load(items) {
    for (const n of items) if (!this._items.has(Number(n.id))) this._items.set(Number(n.id), itemOf(n));
    this._trim();
  }

  /**
   * A notification frame, in seq order. Returns `{item, replaced}`: `replaced` is the item
   * it takes the place of, held under the same id at an older seq (a snooze that woke), else null.
   */
  take(frame) {
    const held = this._items.get(Number(frame.id)) ?? null;
    // A woken snooze is new again, but its answer stands: the frame does not carry it.
    const item = { ...itemOf(frame), answer: frame.answer ?? held?.answer ?? null };
    if (held && held.seq >= item.seq) return { item: held, replaced: null };
    this._items.set(item.id, item);
    this._trim();
    return { item, replaced: held };
  }

  /**
   * A `state` event, in seq order. Returns `{changed, removed, unknown}`: the items as they
   * are now, the ids gone, and ids the event names that are not held (a page that holds only
   * the inbox may fetch what an `unarchive` brings back).
   */
  apply(event) {
    const result = { changed: [], removed: [], unknown: [] };
    if (event.op === "seen") {
      this.seenSeq = Math.max(this.seenSeq, event.up_to_seq);
      return result;
    }
    let taken;
    const named = Array.isArray(event.ids) ? event.ids : event.notification != null ? [event.notification] : null;
    if (named !== null) {
      taken = [];
      for (const id of named) {
        const item = this._items.get(id);
        if (item) taken.push(item);
        else result.unknown.push(id);
      }
    } else {
      taken = [...this._items.values()].filter((item) => takenByFilter(item, event));
    }
    for (const item of taken) {
      const after = afterOp(item, event);
      if (after === null) {
        this._items.delete(item.id);
        result.removed.push(item.id);
      } else {
        this._items.set(item.id, after);
        result.changed.push(after);
      }
    }
    return result;
  }

  _trim() {
    if (this._items.size <= this._limit) return;
    const oldest = [...this._items.values()].sort((a, b) => a.seq - b.seq);
    for (const item of oldest.slice(0, this._items.size - this._limit)) this._items.delete(item.id);
  }
}
