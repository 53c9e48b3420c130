// Model upload form (templates/projects/models/list.html): chunked, resumable uploads
// through the API, one overall progress bar, then the model is created from the uploads.
//
//   POST   <uploads>/                 {project, filename, relative_path, size} -> {id, offset}
//   PUT    <uploads>/<id>/            one chunk: Content-Range, X-Chunk-SHA256 (when WebCrypto is there)
//   GET    <uploads>/<id>/            {offset, status}: where to resume after a lost connection
//   POST   <uploads>/<id>/complete/   {status, blob_sha256}
//   POST   <models>/                  {project, name, uploads: [ids]} -> 201 {id, ...} | 400 {error}
//                                     (a .zip of a model folder: 202 {id, ...} of the job unpacking it;
//                                     the page then follows that job, whose artifact is the model)
//
// The server's part file is the truth for the offset: after a network error or a 5xx the
// client waits (1, 2, 4 … 30 s, at most MAX_TRIES times), asks for the offset and goes on
// from there. Unfinished uploads are remembered in localStorage (per file: name, size, last
// modified), so choosing the same file again after a reload resumes instead of starting over.
(function () {
  "use strict";

  var form = document.querySelector("form[data-model-uploader]");
  if (!form) return;

  var MAX_TRIES = 10;
  var MAX_DELAY_S = 30;
  var SPEED_WINDOW_MS = 5000;
  var STORE_PREFIX = "hartonomous.upload:";

  var cfg = form.dataset;
  var chunkBytes = Math.max(1, parseInt(cfg.chunkBytes, 10) || 64 * 1024 * 1024);
  var uploadsUrl = cfg.uploadsUrl.replace(/\/?$/, "/");
  var progressBlock = form.querySelector("[data-upload-progress]");
  var progressBar = progressBlock.querySelector(".progress");
  var progressFill = progressBlock.querySelector(".progress .bar");
  var statusText = progressBlock.querySelector("[data-upload-status]");
  var errorBlock = form.querySelector("[data-upload-error]");
  var submit = form.querySelector('button[type="submit"], button:not([type])');
  var filesInput = form.querySelector("#upload-files");
  var folderInput = form.querySelector("#upload-folder");
  var canHash = !!(window.isSecureContext && window.crypto && window.crypto.subtle);

  // --- Small helpers -------------------------------------------------------------------------

  function csrfToken() {
    try {
      var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      if (headers["X-CSRFToken"]) return headers["X-CSRFToken"];
    } catch (e) { /* fall back to the cookie */ }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // A failure with a message for the person; ``refused``: the server turned the files down
  // (nothing was kept), so there is no progress to show any more.
  function UploadError(message, refused) { this.message = message; this.refused = !!refused; }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function hex(buffer) {
    var bytes = new Uint8Array(buffer), out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  function megabytes(bytes) { return (bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0) + " MB"; }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + (seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function errorMessage(response, fallback) {
    var error = response && response.json && response.json.error;
    if (error && error.message) return error.message;
    if (response && response.status) return fallback + " (HTTP " + response.status + ")";
    return fallback;
  }

  // One request. Resolves with {status, json} for any HTTP answer; rejects (network error,
  // aborted request) with {network: true}. XMLHttpRequest rather than fetch: it reports the
  // progress of a chunk while it is being sent.
  function request(method, url, body, headers, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      Object.keys(headers || {}).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
      if (onProgress) xhr.upload.onprogress = function (event) { onProgress(event.loaded); };
      xhr.onload = function () {
        var json = null;
        try { json = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch (e) { json = null; }
        resolve({ status: xhr.status, json: json });
      };
      xhr.onerror = xhr.onabort = xhr.ontimeout = function () { reject({ network: true }); };
      if (body !== null && body !== undefined && !(body instanceof ArrayBuffer)) {
        xhr.setRequestHeader("Content-Type", "application/json");
        body = JSON.stringify(body);
      }
      xhr.send(body === undefined ? null : body);
    });
  }

  function retryable(response) {
    return !response || response.status >= 500 || response.status === 408 || response.status === 429;
  }

  // --- Remembered uploads (localStorage) -------------------------------------------------------

  function storeKey(item) {
    var f = item.file;
    return STORE_PREFIX + [cfg.org, item.project, item.relativePath || f.name, f.size, f.lastModified].join("|");
  }

  function remembered(item) {
    try { return window.localStorage.getItem(storeKey(item)); } catch (e) { return null; }
  }

  function remember(item) {
    try { window.localStorage.setItem(storeKey(item), item.id); } catch (e) { /* private mode, full */ }
  }

  function forget(item) {
    try { window.localStorage.removeItem(storeKey(item)); } catch (e) { /* nothing to do */ }
  }

  // --- Progress: one bar for all files --------------------------------------------------------

  var progress = null;

  function startProgress(items) {
    progress = {
      total: items.reduce(function (sum, item) { return sum + item.file.size; }, 0),
      confirmed: 0,   // bytes the server holds, over all files
      inFlight: 0,    // bytes of the chunk being sent
      sent: 0,        // bytes sent in this page (for the speed; resumed bytes do not count)
      samples: [],    // [time, sent] over the last SPEED_WINDOW_MS
      label: "Starting…",
    };
    progressBlock.hidden = false;
    renderProgress();
    // Speed and time left also move while a chunk is on its way (or stuck).
    progress.timer = setInterval(function () { sample(); renderProgress(progress.note); }, 1000);
  }

  function stopProgress() {
    if (progress && progress.timer) clearInterval(progress.timer);
  }

  function sample() {
    var now = performance.now(), samples = progress.samples;
    samples.push([now, progress.sent + progress.inFlight]);
    while (samples.length > 2 && now - samples[1][0] > SPEED_WINDOW_MS) samples.shift();
  }

  function speed() {
    var samples = progress.samples;
    if (samples.length < 2) return 0;
    var first = samples[0], last = samples[samples.length - 1];
    var seconds = (last[0] - first[0]) / 1000;
    return seconds > 0.2 ? (last[1] - first[1]) / seconds : 0;
  }

  // ``note`` replaces the status line until the next call without one (a retry's countdown).
  function renderProgress(note) {
    progress.note = note;
    var done = Math.min(progress.total, progress.confirmed + progress.inFlight);
    var percent = progress.total ? Math.floor((100 * done) / progress.total) : 100;
    progressBar.setAttribute("aria-valuenow", String(percent));
    progressFill.style.width = percent + "%";
    var parts = [progress.label, percent + " %"];
    var rate = speed();
    if (rate > 0 && done < progress.total) {
      parts.push((rate / 1e6).toFixed(1) + " MB/s");
      parts.push("about " + duration((progress.total - done) / rate) + " left");
    }
    statusText.textContent = note || parts.join(" · ");
  }

  // --- One file --------------------------------------------------------------------------------

  // Where the server stands with this upload: {status, offset} or null if unreachable.
  function serverState(item) {
    return request("GET", uploadsUrl + item.id + "/").then(function (response) {
      if (response.status === 200 && response.json) return response.json;
      if (response.status === 404) return { status: "missing", offset: 0 };
      return null;
    }, function () { return null; });
  }

  // Open the upload, or pick up the one remembered for this file.
  function open(item) {
    var known = remembered(item);
    var resume = known ? request("GET", uploadsUrl + known + "/").then(function (r) { return r; }, function () { return null; })
                       : Promise.resolve(null);
    return resume.then(function (response) {
      var body = response && response.status === 200 && response.json;
      if (body && body.size === item.file.size && (body.status === "receiving" || body.status === "complete")) {
        item.id = body.id;
        item.offset = body.offset;
        item.complete = body.status === "complete";
        return;
      }
      if (known) forget(item);
      return request("POST", uploadsUrl, {
        project: item.project, filename: item.file.name, relative_path: item.relativePath, size: item.file.size,
      }).then(function (created) {
        if (created.status !== 201 || !created.json) throw new UploadError(errorMessage(created, "The upload of " + item.file.name + " could not start"));
        item.id = created.json.id;
        item.offset = created.json.offset || 0;
        remember(item);
      });
    });
  }

  function send(item) {
    var file = item.file, failures = 0, base = progress.confirmed;

    function settle(offset) {
      item.offset = offset;
      progress.inFlight = 0;
      progress.confirmed = base + offset;
      sample();
      renderProgress();
    }

    // A lost connection or a server error: wait, ask where the server stands, go on from there.
    function recover(reason) {
      failures += 1;
      progress.inFlight = 0;
      if (failures > MAX_TRIES) {
        return Promise.reject(new UploadError(
          "The connection to the server was lost while sending " + file.name + " (" + reason + "). " +
          "Choose the same files again later to resume where it stopped."));
      }
      var delay = Math.min(MAX_DELAY_S, Math.pow(2, failures - 1));
      renderProgress("Connection problem (" + reason + "); trying again in " + delay + " s… (" + failures + " of " + MAX_TRIES + ")");
      return sleep(delay * 1000).then(function () { return serverState(item); }).then(function (state) {
        if (!state) return next();  // still unreachable: the next PUT tells (and counts as a try)
        if (state.status !== "receiving") {
          throw new UploadError("The upload of " + file.name + " is " + state.status + " on the server; choose the files again to start over.");
        }
        settle(state.offset);
        return next();
      });
    }

    function next() {
      if (item.offset >= file.size) return Promise.resolve();
      var start = item.offset, end = Math.min(start + chunkBytes, file.size);
      var slice = file.slice(start, end);
      return slice.arrayBuffer().then(function (buffer) {
        var hashing = canHash ? window.crypto.subtle.digest("SHA-256", buffer).then(hex, function () { return null; }) : Promise.resolve(null);
        return hashing.then(function (digest) {
          var headers = { "Content-Type": "application/octet-stream", "Content-Range": "bytes " + start + "-" + (end - 1) + "/" + file.size };
          if (digest) headers["X-Chunk-SHA256"] = digest;
          return request("PUT", uploadsUrl + item.id + "/", buffer, headers, function (loaded) {
            progress.inFlight = Math.min(loaded, end - start);
            sample();
            renderProgress();
          });
        });
      }).then(function (response) {
        if (response.status === 200 && response.json) {
          progress.sent += end - start;
          failures = 0;
          settle(response.json.offset);
          return next();
        }
        var error = response.json && response.json.error;
        if (response.status === 409 && error && error.code === "offset_mismatch" && typeof error.offset === "number") {
          progress.inFlight = 0;
          if (error.offset === start) return recover("the server refused the chunk");  // cannot happen; do not loop
          settle(error.offset);
          return next();
        }
        if (response.status === 409 && error && error.code === "conflict") {
          return recover(error.message || "the chunk arrived damaged");  // damaged chunk, or the upload ended
        }
        if (retryable(response)) return recover("HTTP " + response.status);
        throw new UploadError(errorMessage(response, "The server refused a part of " + file.name));
      }, function (failure) {
        if (failure && failure.network) return recover("network error");
        throw failure;
      });
    }

    return next().then(function () { settle(file.size); });
  }

  // Check size and SHA-256 on the server; retried like a chunk (completing twice is harmless).
  function complete(item) {
    var failures = 0;
    function attempt() {
      return request("POST", uploadsUrl + item.id + "/complete/").then(function (r) { return r; }, function () { return null; })
        .then(function (response) {
          if (response && response.status === 200 && response.json && response.json.status === "complete") {
            item.complete = true;
            item.sha256 = response.json.blob_sha256;
            return;
          }
          if (!retryable(response)) throw new UploadError(errorMessage(response, "The server could not finish " + item.file.name));
          failures += 1;
          if (failures > MAX_TRIES) throw new UploadError("The connection to the server was lost while finishing " + item.file.name + ".");
          var delay = Math.min(MAX_DELAY_S, Math.pow(2, failures - 1));
          renderProgress("Connection problem; trying again in " + delay + " s…");
          return sleep(delay * 1000).then(attempt);
        });
    }
    return attempt();
  }

  // --- The form --------------------------------------------------------------------------------

  function chosenFiles() {
    var project = form.querySelector("#upload-project").value;
    var folder = folderInput && folderInput.files && folderInput.files.length ? Array.prototype.slice.call(folderInput.files) : null;
    if (folder) {
      return folder.map(function (file) {
        var relative = (file.webkitRelativePath || file.name).split("/").slice(1).join("/") || file.name;
        return { file: file, project: project, relativePath: relative };
      }).filter(function (item) {
        // Hidden files and folders (.git/, .DS_Store, .cache/) are not part of a model.
        return !item.relativePath.split("/").some(function (part) { return part.charAt(0) === "."; });
      });
    }
    return Array.prototype.slice.call((filesInput && filesInput.files) || []).map(function (file) {
      return { file: file, project: project, relativePath: file.name };
    });
  }

  function setBusy(busy) {
    form.querySelectorAll("input, select, button").forEach(function (el) { el.disabled = busy; });
    form.setAttribute("aria-busy", busy ? "true" : "false");
    if (busy) window.addEventListener("beforeunload", warnBeforeLeaving);
    else window.removeEventListener("beforeunload", warnBeforeLeaving);
  }

  function warnBeforeLeaving(event) {
    event.preventDefault();
    event.returnValue = "";
  }

  function showError(message) {
    errorBlock.textContent = message;
    errorBlock.hidden = false;
  }

  function run(items) {
    var sequence = Promise.resolve();
    items.forEach(function (item, index) {
      sequence = sequence.then(function () {
        var label = items.length > 1 ? item.relativePath + " (" + (index + 1) + " of " + items.length + ")" : item.relativePath;
        progress.label = "Sending " + label;
        renderProgress();
        return open(item).then(function () {
          if (item.complete) {
            progress.confirmed += item.file.size;
            renderProgress();
            return;
          }
          return send(item).then(function () {
            progress.label = "Checking " + label;
            renderProgress();
            return complete(item);
          });
        });
      });
    });
    var zipped = items.length === 1 && /\.zip$/i.test(items[0].file.name);
    return sequence.then(function () {
      progress.label = zipped ? "Checking the archive" : "Creating the model";
      renderProgress();
      return request("POST", cfg.modelsUrl, {
        project: items[0].project,
        name: form.querySelector("#upload-name").value.trim(),
        uploads: items.map(function (item) { return item.id; }),
      }).then(function (response) { return response; }, function () {
        throw new UploadError("The connection to the server was lost while creating the model; see the list of models before trying again.");
      });
    }).then(function (response) {
      // Created or refused: the server has consumed the uploads either way.
      items.forEach(forget);
      if (response.status === 201 && response.json && response.json.id !== undefined) {
        stopProgress();
        statusText.textContent = "Uploaded; opening the model…";
        window.removeEventListener("beforeunload", warnBeforeLeaving);
        window.location.assign(cfg.modelUrlTemplate.replace("/0/", "/" + response.json.id + "/"));
        return true;
      }
      if (response.status === 202 && response.json && response.json.id !== undefined) {  // a zip: a job unpacks it
        stopProgress();
        statusText.textContent = "Uploaded; unpacking the archive on the server…";
        window.removeEventListener("beforeunload", warnBeforeLeaving);
        window.location.assign(cfg.jobUrlTemplate.replace("/0/", "/" + response.json.id + "/"));
        return true;
      }
      throw new UploadError(errorMessage(response, "The model could not be created"), response.status === 400);
    });
  }

  if (filesInput && folderInput) {  // one or the other: choosing one clears the other
    filesInput.addEventListener("change", function () { if (filesInput.files.length) folderInput.value = ""; });
    folderInput.addEventListener("change", function () { if (folderInput.files.length) filesInput.value = ""; });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    errorBlock.hidden = true;
    errorBlock.textContent = "";
    var items = chosenFiles();
    if (!items.length) {
      showError("Choose a GGUF file, or the files, folder or .zip of a Hugging Face model.");
      return;
    }
    var empty = items.filter(function (item) { return item.file.size === 0; });
    if (empty.length) {
      showError("Empty files cannot be uploaded: " + empty.map(function (item) { return item.relativePath; }).join(", ") + ".");
      return;
    }
    setBusy(true);
    startProgress(items);
    run(items).then(function () { /* navigating away */ }, function (error) {
      stopProgress();
      setBusy(false);
      progress.inFlight = 0;
      if (error && error.refused) progressBlock.hidden = true;
      else renderProgress("Stopped at " + progressBar.getAttribute("aria-valuenow") + " %.");
      showError(error instanceof UploadError ? error.message : "The upload failed: " + ((error && error.message) || error));
    });
  });
})();
