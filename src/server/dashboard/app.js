// kpi-engine dashboard: submit the pickers on change, and reload the page when the server
// applies a new configuration, ingests records, or its config errors appear or go away.
(function () {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  var b = document.body.dataset;
  function poll() {
    fetch("/health", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (h) {
        if (h && (String(h.config_version) !== b.version ||
                  String(h.data_generation) !== b.generation || h.status !== b.status)) {
          location.reload();
        } else {
          setTimeout(poll, 2000);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
