/* Small behaviours every page may use; each one degrades to plain HTML without this file. */
(function () {
  "use strict";

  // Forms that destroy something ask first (data-confirm="Delete ...?").
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    // A line sent to a running script: clear the box for the next one.
    if (form && form.matches && form.matches("[data-input-line]") && event.detail.successful) {
      var field = form.querySelector('input[name="text"]');
      if (field) {
        field.value = "";
        field.focus();
      }
    }
  });

  // A running script's input line shows while the script waits for input: the polled part
  // says so (data-awaiting-input); the line itself is not re-rendered, so what is typed stays.
  document.addEventListener("htmx:afterSwap", function () {
    var live = document.getElementById("live");
    var form = document.getElementById("input");
    if (!live || !form) return;
    var waiting = live.dataset.awaitingInput === "true";
    if (form.hidden !== waiting) return;
    form.hidden = !waiting;
    var field = form.querySelector('input[name="text"]');
    if (waiting && field) field.focus();
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    // On a narrow screen the result is below the editor: Run brings it into view.
    var config = event.detail.requestConfig;
    if (!config || !config.elt || config.elt.id !== "run-form") return;
    if (!window.matchMedia("(max-width: 900px)").matches) return;
    var result = document.getElementById("result");
    if (result) result.scrollIntoView({ block: "start" });
  });
})();
