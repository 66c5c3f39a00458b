// Keyboard-first reviewing. htmx does the requests and swaps; this file only maps
// keys to the buttons and links that are already on the page, so everything here
// also works with the mouse, and the forms work without JavaScript at all.
// Loaded as a file (CSP: script-src 'self'); no inline handlers, no eval.
"use strict";

(function () {
  const TYPING = new Set(["INPUT", "TEXTAREA", "SELECT"]);

  function rows() {
    return Array.from(document.querySelectorAll("[data-queue-row]"));
  }

  function selectedIndex(list) {
    return list.findIndex((row) => row.classList.contains("is-selected"));
  }

  function select(delta) {
    const list = rows();
    if (!list.length) return;
    let index = selectedIndex(list);
    if (index < 0) index = list.findIndex((row) => row.classList.contains("is-current"));
    index = index < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.min(Math.max(index + delta, 0), list.length - 1);
    list.forEach((row) => row.classList.remove("is-selected"));
    const row = list[index];
    row.classList.add("is-selected");
    const link = row.querySelector("a");
    if (link) link.focus({ preventScroll: false });
    row.scrollIntoView({ block: "nearest" });
  }

  function card() {
    return document.getElementById("card");
  }

  function panel(id) {
    const root = card();
    return root ? root.querySelector("#" + id) : null;
  }

  const PANELS = ["edit-panel", "reject-panel", "reject-rest-panel"];

  function openPanel(id) {
    const target = panel(id);
    if (!target) return;
    PANELS.filter((other) => other !== id).forEach((other) => {
      const sibling = panel(other);
      if (sibling) sibling.open = false;
    });
    target.open = true;
    const first =
      target.querySelector("[aria-invalid='true']") ||
      target.querySelector("input[type=radio]:checked") ||
      target.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  }

  function closePanels() {
    PANELS.forEach((id) => {
      const p = panel(id);
      if (p) p.open = false;
    });
    const root = card();
    if (root) root.focus();
  }

  function help() {
    return document.getElementById("review-help");
  }

  function toggleHelp(show) {
    const box = help();
    if (!box) return;
    box.hidden = show === undefined ? !box.hidden : !show;
    if (!box.hidden) {
      const close = box.querySelector("[data-help-close]");
      if (close) close.focus();
    }
  }

  function submit(form) {
    if (!form) return;
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  }

  // Digits pick a reason in the open reject panel: "reject the rest" when it is the
  // one open, otherwise the reject panel (opened by the digit).
  function pickReason(key) {
    const rest = panel("reject-rest-panel");
    const id = rest && rest.open ? "reject-rest-panel" : "reject-panel";
    const attr = id === "reject-rest-panel" ? "data-rest-reason-key" : "data-reason-key";
    const radio = card() && card().querySelector("[" + attr + "='" + key + "']");
    if (!radio) return false;
    openPanel(id);
    radio.checked = true;
    const text = panel(id).querySelector("input[name=reason_text]");
    if (text) text.focus();
    return true;
  }

  // A card the reviewer did not ask for (it replaced theirs: their decision was
  // refused, or the card they opened was taken) must be read before it is decided.
  // The first decision key on it only brings up the notice that says why the card
  // changed; the next one works.
  const DECISION_KEYS = new Set(["a", "e", "r", "x", "1", "2", "3", "4", "5", "6", "7"]);
  let unread = false;

  function armIfReplaced() {
    const root = card();
    unread = Boolean(root && root.hasAttribute("data-replaced"));
  }

  function pointAtNotice() {
    unread = false;
    const notice = card() && card().querySelector("[data-notice]");
    if (!notice) return;
    notice.classList.add("is-flagged");
    notice.focus({ preventScroll: false });
    notice.scrollIntoView({ block: "nearest" });
  }

  // The Undo button lasts as long as the window the server allows (it refuses later
  // anyway, with a message): it goes once the window has passed.
  function expireUndo() {
    const form = card() && card().querySelector("[data-undo-form]");
    if (!form) return;
    const seconds = Number(form.dataset.undoSeconds || "0");
    window.setTimeout(() => {
      if (form.isConnected) form.remove();
    }, seconds * 1000);
  }

  const DECISION_FORMS = "form[data-edit-form], form[data-reject-form], form[data-reject-rest-form]";

  // Enter saves from any field of a decision form but a textarea (where it starts a
  // new line; text inputs submit natively); Ctrl+Enter (Cmd+Enter) saves from anywhere
  // in the form, a textarea included.
  function saveKey(event) {
    if (event.key !== "Enter" || event.altKey || event.shiftKey) return false;
    const target = event.target;
    const form = target && target.closest && target.closest(DECISION_FORMS);
    if (!form) return false;
    const modified = event.ctrlKey || event.metaKey;
    if (!modified) {
      if (target.tagName === "TEXTAREA" || target.tagName === "BUTTON") return false;
      if (target.tagName === "INPUT" && !["checkbox", "radio"].includes(target.type)) return false;
    }
    event.preventDefault();
    submit(form);
    return true;
  }

  // The edit form shows what will change, field by field, before it is saved.
  function originalArguments(root) {
    const values = {};
    root.querySelectorAll("[data-arg]").forEach((cell) => {
      values[cell.dataset.arg] = cell.textContent.trim();
    });
    return values;
  }

  function fieldValue(input) {
    if (input.type === "checkbox") return input.checked ? "true" : "false";
    return input.value.trim();
  }

  function showDiff(form) {
    const box = form.querySelector("[data-edit-diff]");
    const root = card();
    if (!box || !root) return;
    const original = originalArguments(root);
    const changes = [];
    form.querySelectorAll("[name^='arg-']").forEach((input) => {
      const name = input.name.slice(4);
      const before = name in original ? original[name] : "";
      const after = fieldValue(input);
      if (before !== after) changes.push([name, before, after]);
    });
    const list = box.querySelector("ul");
    list.replaceChildren();
    changes.forEach(([name, before, after]) => {
      const item = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = name;
      const old = document.createElement("del");
      old.textContent = before || "(empty)";
      const now = document.createElement("ins");
      now.textContent = after || "(empty)";
      item.append(code, ": ", old, " → ", now);
      list.append(item);
    });
    box.hidden = changes.length === 0;
    box.dataset.changes = String(changes.length);
  }

  document.addEventListener("input", (event) => {
    const form = event.target.closest && event.target.closest("form[data-edit-form]");
    if (form) showDiff(form);
  });
  document.addEventListener("change", (event) => {
    const form = event.target.closest && event.target.closest("form[data-edit-form]");
    if (form) showDiff(form);
  });

  document.addEventListener("keydown", (event) => {
    if (saveKey(event)) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target && (TYPING.has(target.tagName) || target.isContentEditable);
    const helpOpen = help() && !help().hidden;

    if (event.key === "Escape") {
      if (helpOpen) toggleHelp(false);
      else closePanels();
      event.preventDefault();
      return;
    }
    if (unread && !typing && DECISION_KEYS.has(event.key)) {
      pointAtNotice();
      event.preventDefault();
      return;
    }
    // In a reject panel, digits pick a reason even from the note field's radios.
    const inReject =
      target && target.closest && target.closest("#reject-panel, #reject-rest-panel");
    if (/^[1-7]$/.test(event.key) && (!typing || (inReject && target.type === "radio"))) {
      if (pickReason(event.key)) event.preventDefault();
      return;
    }
    if (typing || (helpOpen && event.key !== "?")) return;

    switch (event.key) {
      case "j":
        select(1);
        break;
      case "k":
        select(-1);
        break;
      case "a":
        submit(card() && card().querySelector("[data-accept-form]"));
        break;
      case "e":
        openPanel("edit-panel");
        break;
      case "r":
        openPanel("reject-panel");
        break;
      case "x":
        openPanel("reject-rest-panel");
        break;
      case "u":
        submit(card() && card().querySelector("[data-undo-form]"));
        break;
      case "w": {
        const link = card() && card().querySelector("[data-work-link]");
        if (link) link.click();
        break;
      }
      case "?":
        toggleHelp();
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-help-close]")) toggleHelp(false);
    else if (event.target === help()) toggleHelp(false);
  });

  // After htmx swaps in a card: reopen the panel that came back with errors and
  // focus its first invalid field; otherwise focus the card so keys keep working.
  document.addEventListener("htmx:afterSwap", (event) => {
    const root = card();
    if (!root || !event.detail.target || event.detail.target.id !== "card") return;
    markCurrent(root.dataset.proposal);
    armIfReplaced();
    expireUndo();
    const open = root.dataset.panel;
    if (open) openPanel(open + "-panel");
    else root.focus({ preventScroll: true });
    if (!open) window.scrollTo({ top: 0 });
  });

  // The list is not re-rendered after each decision: highlight the card's row here.
  function markCurrent(proposalId) {
    rows().forEach((row) => row.classList.remove("is-current", "is-selected"));
    const row = proposalId && document.getElementById("q-" + proposalId);
    if (row) row.classList.add("is-current");
  }

  // On a full page load with errors (no-JS fallback rendered server side), do the same.
  document.addEventListener("DOMContentLoaded", () => {
    const root = card();
    if (!root) return;
    armIfReplaced();
    expireUndo();
    const open = root.dataset.panel;
    if (open) openPanel(open + "-panel");
  });
})();
