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
