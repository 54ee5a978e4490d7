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

  document.addEventListener("htmx:afterSwap", function (event) {
    // On a narrow screen the result is below the editor: Run brings it into view.
    var config = event.detail.requestConfig;
    if (!config || !config.elt || config.elt.id !== "run-form") return;
    if (!window.matchMedia("(max-width: 900px)").matches) return;
    var result = document.getElementById("result");
    if (result) result.scrollIntoView({ block: "start" });
  });
})();
