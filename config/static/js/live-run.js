// Live status of a run: polls the run's API answer (same origin, session cookie) and reloads
// the page once the run has ended, so the final page is the server-rendered one.
// A file of its own: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var box = document.getElementById("live-run");
  if (!box || !box.dataset.poll) {
    return;
  }
  var badge = box.querySelector("[data-run-status]");
  var labels = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed" };
  var delay = 400;

  function poll() {
    fetch(box.dataset.poll, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (run) {
        if (run.status === "succeeded" || run.status === "failed") {
          window.location.reload();
          return;
        }
        if (badge && labels[run.status]) {
          badge.textContent = labels[run.status];
          badge.className = "status status-" + run.status;
        }
        setTimeout(poll, delay);
      })
      .catch(function () {
        // A hiccup (server restart, lost connection): back off, keep trying.
        delay = Math.min(delay * 2, 5000);
        setTimeout(poll, delay);
      });
  }
  setTimeout(poll, delay);
})();
