// Live job updates: one websocket per page for the current organisation
// (/ws/o/<org>/jobs/), with an htmx polling fallback when the socket is unavailable.
(function () {
  "use strict";

  function setField(root, name, value) {
    root.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) {
      if (name === "error") {
        el.textContent = value || "";
        el.hidden = !value;
      } else {
        el.textContent = value;
      }
    });
  }

  // Jobs whose row is being fetched: id -> the latest event seen meanwhile. Events come
  // in bursts (queued, running, 33 %, …); without this each would fetch a row of its own.
  var pendingRows = {};

  // A job this page does not show yet: add its row to live job tables that want it.
  function insertRow(job, org) {
    if (pendingRows[job.id]) { pendingRows[job.id] = job; return; }
    if (!window.htmx) return;
    var fetches = [];
    document.querySelectorAll("table[data-live-jobs]").forEach(function (table) {
      var onlyProject = table.dataset.liveJobsProject;
      if (onlyProject && onlyProject !== job.project) return;
      var body = table.tBodies[0];
      if (!body) return;
      fetches.push(window.htmx.ajax("GET", "/o/" + org + "/jobs/" + job.id + "/?fragment=row", { target: body, swap: "afterbegin" }));
    });
    if (!fetches.length) return;
    pendingRows[job.id] = job;
    var done = function () {
      var latest = pendingRows[job.id];
      delete pendingRows[job.id];
      updateJob(latest);  // what arrived while the row was on its way
    };
    Promise.all(fetches).then(done, done);
  }

  var FINISHED = ["succeeded", "failed", "cancelled"];

  function applyJob(job, org) {
    if (!document.querySelector('[data-job-id="' + job.id + '"]')) {
      insertRow(job, org);
      return;
    }
    updateJob(job);
  }

  function updateJob(job) {
    document.querySelectorAll('[data-job-id="' + job.id + '"]').forEach(function (root) {
      // A finished job never runs again (a retry is a new job): an event that says
      // otherwise is older than what the element shows.
      if (FINISHED.indexOf(root.dataset.status) >= 0 && !job.finished) return;
      root.dataset.status = job.status;
      root.querySelectorAll(".progress").forEach(function (bar) {
        bar.setAttribute("aria-valuenow", String(job.percent));
        var fill = bar.querySelector(".bar");
        if (fill) fill.style.width = job.percent + "%";
      });
      root.querySelectorAll(".badge").forEach(function (badge) {
        badge.className = "badge status-" + job.status;
      });
      setField(root, "status_label", job.status_label);
      setField(root, "percent", String(job.percent));
      setField(root, "message", job.message);
      setField(root, "error", job.error);
      root.querySelectorAll("[data-show-when]").forEach(function (el) {
        el.hidden = !job[el.dataset.showWhen];
      });
      if (job.finished) {
        root.removeAttribute("data-poll-url");
        // A job page's panel also shows timings, log, result and artifacts: fetch it once
        // more now that they are final.
        if (root.dataset.panelUrl && window.htmx) {
          window.htmx.ajax("GET", root.dataset.panelUrl, { target: root, swap: "outerHTML" });
        }
      }
    });
  }

  function refreshPanels() {
    document.querySelectorAll("[data-poll-url]").forEach(function (panel) {
      if (window.htmx) window.htmx.ajax("GET", panel.dataset.pollUrl, { target: panel, swap: "outerHTML" });
    });
  }

  var pollTimer = null;
  function startPolling() {
    if (pollTimer) return;
    pollTimer = window.setInterval(function () {
      var panels = document.querySelectorAll("[data-poll-url]");
      if (!panels.length) { window.clearInterval(pollTimer); pollTimer = null; return; }
      refreshPanels();
    }, 2000);
  }

  function connect(org, attempt) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try {
      socket = new WebSocket(scheme + window.location.host + "/ws/o/" + org + "/jobs/");
    } catch (e) {
      startPolling();
      return;
    }
    socket.onopen = function () {
      attempt = 0;
      document.body.dataset.live = "ws";
      if (pollTimer) { window.clearInterval(pollTimer); pollTimer = null; }
      // Catch up on anything that changed between rendering the page and connecting: job
      // panels and table rows that were queued or running carry a data-poll-url.
      refreshPanels();
    };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (data.type === "job") applyJob(data.job, org);
    };
    socket.onclose = function () {
      document.body.dataset.live = "polling";
      startPolling();
      // Reconnect with backoff; polling covers the gap.
      if (attempt < 8) window.setTimeout(function () { connect(org, attempt + 1); }, Math.min(30000, 1000 * Math.pow(2, attempt)));
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var main = document.querySelector("main[data-live-org]");
    if (main && document.querySelector("[data-job-id], table[data-live-jobs]")) connect(main.dataset.liveOrg, 0);
    var switcher = document.querySelector("[data-org-switch]");
    if (switcher) switcher.addEventListener("change", function () { window.location.href = switcher.value; });
  });
})();
