// Asks before a form marked data-confirm is sent (no inline handlers: the CSP forbids them).
document.addEventListener("submit", function (event) {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A live fragment whose refresh fails keeps its last numbers but says since when they are
// stale; the next good refresh takes the marker away (htmx swaps in a fresh element).
const pageLoadedAt = new Date();
const lastGood = {};  // fragment id: when it last refreshed
function markStale(event) {
  const element = event.detail.elt;
  if (!element || !element.id || !(element.getAttribute("hx-trigger") || "").startsWith("every")) {
    return;
  }
  if (element.closest("nav")) {
    return;  // the navigation's badge stays as it is
  }
  if (event.type === "htmx:afterRequest" && event.detail.successful) {
    lastGood[element.id] = new Date();
    return;
  }
  if (!element.querySelector(":scope > .stale-marker")) {
    const marker = document.createElement("p");
    marker.className = "stale-marker notice";
    marker.setAttribute("role", "status");
    marker.textContent = "Not updated since " + (lastGood[element.id] || pageLoadedAt).toLocaleTimeString() +
      ": the console did not answer. Still trying.";
    element.prepend(marker);
  }
}
document.addEventListener("htmx:afterRequest", markStale);
document.addEventListener("htmx:sendError", markStale);

// A click or a form the server refuses (a 409, a 503...) gets no swap from htmx, nor one the
// server never answered: without this the button seemed to do nothing. What happened is said
// next to what sent it, a refusal in the error page's words.
function sayBeside(event) {
  const element = event.detail.elt;
  if (!element || (element.getAttribute("hx-trigger") || "").startsWith("every")) return;  // see markStale
  let message = "The console did not answer: look before trying again.";
  if (event.type === "htmx:responseError") {
    const answer = new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html");
    const said = answer.getElementById("error-message");
    message = said ? said.textContent : "Refused (" + event.detail.xhr.status + "): nothing was changed.";
  }
  let refusal = element.nextElementSibling;
  if (!refusal || !refusal.classList.contains("refusal")) {
    refusal = document.createElement("p");
    refusal.className = "error refusal";
    refusal.setAttribute("role", "alert");
    element.insertAdjacentElement("afterend", refusal);
  }
  refusal.textContent = message;
}
document.addEventListener("htmx:responseError", sayBeside);
document.addEventListener("htmx:sendError", sayBeside);

// An edit sent when the session had ended is not lost: it is kept in sessionStorage until the
// server takes it, and offered back when the page opens again after logging in.
const unsavedKey = "zepix.unsaved:" + window.location.pathname;
function unsavedEdits() {
  try { return JSON.parse(window.sessionStorage.getItem(unsavedKey) || "{}"); } catch (error) { return {}; }
}
function keepUnsaved(edits) {
  if (Object.keys(edits).length) window.sessionStorage.setItem(unsavedKey, JSON.stringify(edits));
  else window.sessionStorage.removeItem(unsavedKey);
}
function editOf(form) {
  const path = form.querySelector("input[name='path']");
  const field = form.querySelector("[name='value']:not([type='hidden'])");
  if (!path || !field) return null;
  return {path: path.value, value: field.type === "checkbox" ? String(field.checked) : field.value};
}
const editsSent = new WeakMap();  // request: the setting it saves
document.addEventListener("htmx:beforeRequest", function (event) {
  const form = event.detail.elt;
  if (!form.closest || !form.closest("#settings") || form.tagName !== "FORM") return;
  const edit = editOf(form);
  if (!edit) return;
  const edits = unsavedEdits();
  edits[edit.path] = edit.value;
  keepUnsaved(edits);
  editsSent.set(event.detail.xhr, edit.path);
});
// Looked at before the swap: the answer replaces the row, and with it the form that sent it.
document.addEventListener("htmx:beforeSwap", function (event) {
  const answered = event.detail.xhr;
  const path = editsSent.get(answered);
  if (path === undefined || answered.status >= 400 || answered.getResponseHeader("HX-Redirect")) return;
  const edits = unsavedEdits();
  delete edits[path];
  keepUnsaved(edits);
});
document.addEventListener("DOMContentLoaded", function () {
  const edits = unsavedEdits();
  const notice = document.getElementById("live-notice");
  if (!notice || !document.getElementById("settings") || !Object.keys(edits).length) return;
  const offer = document.createElement("div");
  offer.className = "conflict";
  offer.id = "unsaved-offer";
  offer.setAttribute("role", "alert");
  const what = Object.keys(edits).map(function (path) { return path + " = " + edits[path]; }).join("; ");
  offer.textContent = "Not saved before your session ended: " + what + ". ";
  const putBack = document.createElement("button");
  putBack.type = "button";
  putBack.textContent = "Put them back in the form";
  putBack.addEventListener("click", function () {
    Object.keys(edits).forEach(function (path) {
      const pathInput = Array.from(document.querySelectorAll("#settings input[name='path']")).find(function (input) { return input.value === path; });
      const field = pathInput && pathInput.form.querySelector("[name='value']:not([type='hidden'])");
      if (!field) return;
      if (field.type === "checkbox") field.checked = edits[path] === "true";
      else field.value = edits[path];
      field.classList.add("restored");
    });
    offer.textContent = "Put back: check the values, then press Enter (or change them) to save.";
  });
  const discard = document.createElement("button");
  discard.type = "button";
  discard.textContent = "Discard";
  discard.addEventListener("click", function () { keepUnsaved({}); offer.remove(); });
  offer.append(putBack, " ", discard);
  notice.prepend(offer);
});

// On a small screen a wide table scrolls inside its own box: a box that scrolls must be
// reachable from the keyboard (WCAG 2.1.1; axe-core's scrollable-region-focusable).
function focusableTables() {
  document.querySelectorAll("main table").forEach(function (table) {
    if (table.scrollWidth > table.clientWidth) table.tabIndex = 0;
    else table.removeAttribute("tabindex");
  });
}
document.addEventListener("DOMContentLoaded", focusableTables);
document.addEventListener("htmx:afterSettle", focusableTables);
window.addEventListener("resize", focusableTables);
