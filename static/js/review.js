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

  function openPanel(id, other) {
    const target = panel(id);
    if (!target) return;
    const sibling = panel(other);
    if (sibling) sibling.open = false;
    target.open = true;
    const first =
      target.querySelector("[aria-invalid='true']") ||
      target.querySelector("input[type=radio]:checked") ||
      target.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  }

  function closePanels() {
    ["edit-panel", "reject-panel"].forEach((id) => {
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

  function pickReason(key) {
    const radio = card() && card().querySelector("[data-reason-key='" + key + "']");
    if (!radio) return false;
    openPanel("reject-panel", "edit-panel");
    radio.checked = true;
    const text = panel("reject-panel").querySelector("input[name=reason_text]");
    if (text) text.focus();
    return true;
  }

  document.addEventListener("keydown", (event) => {
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
    // In the reject panel, digits pick a reason even from the note field's radios.
    const inReject = target && target.closest && target.closest("#reject-panel");
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
        openPanel("edit-panel", "reject-panel");
        break;
      case "r":
        openPanel("reject-panel", "edit-panel");
        break;
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
    const open = root.dataset.panel;
    if (open === "edit") openPanel("edit-panel", "reject-panel");
    else if (open === "reject") openPanel("reject-panel", "edit-panel");
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
    const open = root.dataset.panel;
    if (open === "edit") openPanel("edit-panel", "reject-panel");
    else if (open === "reject") openPanel("reject-panel", "edit-panel");
  });
})();
