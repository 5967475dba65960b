/**
 * The parts of an inbox item beyond its text (dashboard.js renders the rest): its action buttons,
 * and, on a row that stands for a group, the group's figures and its members on demand.
 *
 * An action with a url is a link (by the page's link rule, links.js); one without is the user's
 * answer, sent with client.answer(seq, actionId). The first answer on any device stands: the item
 * then shows it in place of the answer buttons ("✓ Approve", or "✓ Approve · on another device"
 * when the `action` event comes for an answer this page did not send). Text only ever goes through textContent.
 */
import { safeLink } from "./links.js";

const STYLES = new Set(["primary", "secondary", "danger"]);

/** The item's buttons, from a frame's or a page's `actions`; `answer`: the action id that stands, if any. */
export function renderActions(li, actions, answer = null) {
  const box = li.querySelector('[data-field="actions"]');
  box.replaceChildren();
  for (const action of Array.isArray(actions) ? actions : []) {
    const style = STYLES.has(action.style) ? action.style : "secondary";
    let el;
    if (action.url) {
      const href = safeLink(action.url);
      if (!href) continue; // a url that may not be a link is neither a link nor an answer
      el = document.createElement("a");
      el.href = href;
      el.rel = "noopener noreferrer";
    } else {
      el = document.createElement("button");
      el.type = "button";
    }
    el.className = `button small ${style}`;
    el.dataset.action = String(action.id);
    el.textContent = String(action.label);
    box.appendChild(el);
  }
  const standing = document.createElement("span");
  standing.className = "answer";
  standing.dataset.field = "answer";
  standing.setAttribute("role", "status");
  box.appendChild(standing);
  showAnswer(li, answer, { elsewhere: false });
}

/** The answer that stands, in place of the answer buttons (links stay); `elsewhere`: not sent from this page. */
export function showAnswer(li, answer, { elsewhere }) {
  const box = li.querySelector('[data-field="actions"]');
  const standing = box.querySelector('[data-field="answer"]');
  const buttons = [...box.querySelectorAll("button[data-action]")];
  const chosen = buttons.find((b) => b.dataset.action === answer);
  li.dataset.answer = answer ?? "";
  for (const button of buttons) button.hidden = answer != null;
  standing.textContent = answer == null ? "" : `✓ ${chosen ? chosen.textContent : answer}${elsewhere ? " · on another device" : ""}`;
  standing.hidden = answer == null;
  box.hidden = ![...box.children].some((el) => !el.hidden);
}

/** The row's group figures ("and 3 more", "from ana, bo"), or none on a row that is not a group's. */
export function renderGroup(li, group) {
  li.dataset.group = group ? String(group.key) : "";
  li.querySelector('[data-field="group_key"]').value = li.dataset.group; // "Mark read" marks the whole group
  const box = li.querySelector('[data-field="group"]');
  const more = li.querySelector('[data-field="group-more"]');
  const actors = li.querySelector('[data-field="group-actors"]');
  const count = group ? Number(group.more) || 0 : 0;
  more.textContent = `and ${count} more`;
  more.hidden = count === 0;
  more.setAttribute("aria-expanded", "false");
  actors.textContent = group?.actors_text ? `from ${group.actors_text}` : "";
  box.hidden = more.hidden && !actors.textContent;
  const members = li.querySelector(".group-members");
  members.replaceChildren();
  members.hidden = true;
}

/** Finding a group's row, and drawing it again with its figures as the server counts them now. */
export function groupRows(items, { fetchPage, render }) {
  const byGroup = (key) => [...items()].find((li) => li.dataset.group === key);
  async function refreshGroup(key) {
    const [row] = (await fetchPage({ group: key, row: "1" })).items;
    const li = byGroup(key);
    if (li && row && Number(li.dataset.seq) === row.seq) li.replaceWith(render(row));
  }
  return { byGroup, refreshGroup };
}

/**
 * Clicks on the list: an answer button calls client.answer (whatever it answers is shown by the `action`
 * event that follows, on every device; nothing is assumed here); "and N more" lists the group's members under its row.
 */
export function setupItemParts(list, { client, fetchMembers, renderMember }) {
  const sentHere = new Set(); // "<notification id>:<action id>" answered from this page
  client.on("change", ({ op, frame }) => {
    if (op !== "action") return;
    const li = list.querySelector(`li.item[data-id="${Number(frame.notification)}"]`);
    if (li) showAnswer(li, frame.action, { elsewhere: !sentHere.has(`${frame.notification}:${frame.action}`) });
  });
  list.addEventListener("click", async (event) => {
    const answer = event.target.closest("button[data-action]");
    if (answer && list.contains(answer)) {
      const li = answer.closest("li.item");
      sentHere.add(`${li.dataset.id}:${answer.dataset.action}`);
      answer.disabled = true;
      try {
        await client.answer(Number(li.dataset.seq), answer.dataset.action);
      } catch (error) {
        console.warn("answer not sent:", error);
      } finally {
        answer.disabled = false;
      }
      return;
    }
    const toggle = event.target.closest("button.group-toggle");
    if (!toggle || !list.contains(toggle)) return;
    const li = toggle.closest("li.item");
    const members = li.querySelector(".group-members");
    if (toggle.getAttribute("aria-expanded") === "true") {
      toggle.setAttribute("aria-expanded", "false");
      members.hidden = true;
      return;
    }
    toggle.disabled = true;
    try {
      const page = await fetchMembers(li.dataset.group);
      members.replaceChildren(...page.items.map(renderMember));
      members.hidden = false;
      toggle.setAttribute("aria-expanded", "true");
    } finally {
      toggle.disabled = false;
    }
  });
}
