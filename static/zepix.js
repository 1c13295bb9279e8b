// Asks before a form marked data-confirm is sent (no inline handlers: the CSP forbids them).
document.addEventListener("submit", function (event) {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
