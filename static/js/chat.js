// The chat page: one websocket per conversation (/ws/o/<org>/conversations/<id>/, protocol in
// runtime/consumers.py). Sends on Enter or the button, streams the answer's deltas in as they
// arrive, shows the queue position, Stop while streaming, Regenerate on the last answer, token
// counts and speed when an answer ends, and reconnects with backoff (the snapshot sent on every
// connect replaces the list). Answers are rendered with markdown.js (escapes first); everything
// else the server sends is set as text.
(function () {
  "use strict";

  var markdown = window.HartonomousMarkdown;
  var root = document.querySelector("[data-chat]");
  if (!root || !markdown) return;

  var list = root.querySelector("[data-messages]");
  var form = root.querySelector("[data-chat-form]");
  var input = form ? form.querySelector("textarea") : null;
  var sendButton = form ? form.querySelector("[data-send]") : null;
  var stopButton = form ? form.querySelector("[data-stop]") : null;
  var stateLine = root.querySelector("[data-chat-state]");
  var errorBox = root.querySelector("[data-chat-error]");
  var feedbackTemplate = root.querySelector("template[data-feedback-template]");
  var canWrite = root.dataset.canWrite === "true";
  var subject = root.dataset.subject || "Agent";

  var socket = null;
  var attempt = 0;
  var leaving = false;
  var gone = false;          // the server refused the conversation (4404): no reconnecting
  var streamingId = null;    // the answer being written, if any
  var pendingSend = null;    // text sent and not yet stored by the server
  var texts = {};            // answer id -> text so far
  var renderPending = {};

  // --- rendering ---------------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function find(id) {
    return list.querySelector('li[data-message-id="' + id + '"]');
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function keepScrolled(wasNearBottom) {
    if (wasNearBottom) list.scrollTop = list.scrollHeight;
  }

  function metaText(m) {
    var parts = [];
    if (m.status !== "complete" && m.status !== "streaming") parts.push(m.status_label);
    if (m.completion_tokens) {
      parts.push(m.completion_tokens + " token" + (m.completion_tokens === 1 ? "" : "s") + " · " + m.prompt_tokens + " prompt tokens");
    }
    if (m.tokens_per_second != null) parts.push(m.tokens_per_second + " tokens/s");
    if (m.ttft_ms != null) parts.push("first token in " + m.ttft_ms + " ms");
    return parts.join(" · ");
  }

  function droppedText(n) {
    return n === 1 ? "1 older message was left out to fit the context window."
      : n + " older messages were left out to fit the context window.";
  }

  function setDropped(li, n) {
    var notice = li.querySelector("[data-dropped]");
    if (!notice) return;
    notice.hidden = !n;
    if (n) notice.textContent = droppedText(n);
  }

  function setMeta(li, text) {
    var meta = li.querySelector("[data-meta]");
    if (meta) meta.textContent = text;
  }

  function renderAnswer(id) {
    var li = find(id);
    if (!li) return;
    var wasNearBottom = nearBottom();
    markdown.renderInto(li.querySelector("[data-content]"), texts[id] || "");
    keepScrolled(wasNearBottom);
  }

  // Deltas arriving within one frame are drawn together.
  function scheduleRender(id) {
    if (renderPending[id]) return;
    renderPending[id] = true;
    window.requestAnimationFrame(function () {
      renderPending[id] = false;
      renderAnswer(id);
    });
  }

  function feedbackFor(message) {
    if (!feedbackTemplate || !canWrite) return null;
    var url = root.dataset.feedbackUrlTemplate.replace("/messages/0/", "/messages/" + message.id + "/");
    var node = feedbackTemplate.content.firstElementChild.cloneNode(true);
    node.setAttribute("action", url);
    node.setAttribute("hx-post", url);
    if (message.feedback) {
      node.dataset.rating = String(message.feedback.rating);
      node.querySelectorAll("button[aria-pressed]").forEach(function (button) {
        button.setAttribute("aria-pressed", String(Number(button.value) === message.feedback.rating));
      });
      node.querySelector("textarea").value = message.feedback.comment || "";
    }
    return node;
  }

  function addFeedback(li, message) {
    if (li.querySelector("[data-feedback]") || message.status === "streaming") return;
    var node = feedbackFor(message);
    if (!node) return;
    li.appendChild(node);
    if (window.htmx) window.htmx.process(node);
  }

  function messageElement(m) {
    var li = el("li", "chat-message role-" + m.role);
    li.dataset.messageId = m.id;
    li.dataset.role = m.role;
    li.dataset.status = m.status;
    li.appendChild(el("div", "chat-author", m.role === "user" ? "You" : subject));
    if (m.role === "assistant") {
      var notice = el("div", "chat-notice");
      notice.dataset.dropped = "";
      li.appendChild(notice);
      setDropped(li, m.dropped_messages);
      var body = el("div", "chat-body markdown");
      body.dataset.content = "";
      body.dataset.markdown = "";
      li.appendChild(body);
      texts[m.id] = m.content || "";
      markdown.renderInto(body, texts[m.id]);
      var meta = el("div", "chat-meta muted", metaText(m));
      meta.dataset.meta = "";
      li.appendChild(meta);
      var error = el("div", "error", m.error || "");
      error.dataset.messageError = "";
      error.setAttribute("role", "alert");
      error.hidden = !m.error;
      li.appendChild(error);
    } else {
      var text = el("div", "chat-body prewrap", m.content);
      text.dataset.content = "";
      li.appendChild(text);
    }
    return li;
  }

  function finishAnswer(li, m) {
    li.dataset.status = m.status;
    texts[m.id] = m.content || "";
    renderAnswer(m.id);
    setMeta(li, metaText(m));
    setDropped(li, m.dropped_messages);
    var error = li.querySelector("[data-message-error]");
    if (error) {
      error.textContent = m.error || "";
      error.hidden = !m.error;
    }
    addFeedback(li, m);
  }

  // Regenerate sits on the last answer only, and only while nothing is being written.
  function updateRegenerate() {
    list.querySelectorAll("[data-regenerate]").forEach(function (button) { button.remove(); });
    if (!canWrite || streamingId !== null || gone) return;
    var last = list.lastElementChild;
    if (!last || last.dataset.role !== "assistant") return;
    var button = el("button", "small secondary", "Regenerate");
    button.type = "button";
    button.dataset.regenerate = "";
    button.addEventListener("click", function () {
      clearError();
      send({ type: "regenerate" });
    });
    var meta = last.querySelector("[data-meta]");
    last.insertBefore(button, meta ? meta.nextSibling : null);
  }

  function isOpen() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  function updateControls() {
    if (sendButton) sendButton.disabled = !isOpen() || streamingId !== null || pendingSend !== null || gone;
    if (stopButton) stopButton.hidden = streamingId === null;
    root.dataset.streaming = streamingId !== null ? "true" : "false";
    updateRegenerate();
  }

  function setState(text) {
    if (stateLine) stateLine.textContent = text;
  }

  function showError(text) {
    if (!errorBox) return;
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function clearError() {
    showError("");
  }

  // --- events from the server --------------------------------------------------------------------

  function onSnapshot(data) {
    canWrite = canWrite && data.can_write;
    // Feedback given on this page survives the rebuild (the snapshot does not carry it).
    var feedback = {};
    list.querySelectorAll("li[data-message-id]").forEach(function (li) {
      var widget = li.querySelector("[data-feedback]");
      if (widget) feedback[li.dataset.messageId] = widget;
    });
    list.replaceChildren();
    texts = {};
    streamingId = null;
    data.messages.forEach(function (m) {
      var li = messageElement(m);
      list.appendChild(li);
      if (m.role !== "assistant") return;
      if (m.status === "streaming") {
        streamingId = m.id;
      } else if (feedback[m.id]) {
        li.appendChild(feedback[m.id]);
      } else {
        addFeedback(li, m);
      }
    });
    keepScrolled(true);
  }

  function onMessage(m) {
    list.appendChild(messageElement(m));
    if (pendingSend !== null && input && input.value.trim() === pendingSend) input.value = "";
    pendingSend = null;
    keepScrolled(true);
  }

  function onAnswer(m) {
    // A new answer right after an answer replaces it (regenerate): the old one is set aside.
    var last = list.lastElementChild;
    if (last && last.dataset.role === "assistant") last.remove();
    var li = messageElement(m);
    setMeta(li, "Writing…");
    list.appendChild(li);
    streamingId = m.id;
    keepScrolled(true);
  }

  function handle(data) {
    var li;
    switch (data.type) {
      case "snapshot":
        onSnapshot(data);
        break;
      case "message":
        onMessage(data.message);
        break;
      case "answer":
        onAnswer(data.message);
        break;
      case "queued":
        li = find(data.id);
        if (li) setMeta(li, "Queued (position " + data.position + ")");
        setState("Waiting for the model: position " + data.position + " in its queue.");
        break;
      case "started":
        li = find(data.id);
        if (li) {
          setMeta(li, "Writing…");
          setDropped(li, data.dropped_messages);
        }
        setState("");
        break;
      case "delta":
        texts[data.id] = (texts[data.id] || "") + data.text;
        scheduleRender(data.id);
        break;
      case "end":
        li = find(data.message.id);
        if (li) finishAnswer(li, data.message);
        if (streamingId === data.message.id) streamingId = null;
        setState("");
        break;
      case "error":
        pendingSend = null;
        showError(data.message);
        break;
      default:
        break;  // pong, and anything newer than this page
    }
    updateControls();
  }

  // --- the socket ----------------------------------------------------------------------------------

  function send(payload) {
    if (!isOpen()) {
      showError("Not connected; reconnecting…");
      return false;
    }
    socket.send(JSON.stringify(payload));
    return true;
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + root.dataset.socketPath);
    socket.onopen = function () {
      attempt = 0;
      root.dataset.connection = "open";
      setState("");
      if (errorBox && errorBox.textContent.indexOf("Not connected") === 0) clearError();
      updateControls();
    };
    socket.onmessage = function (event) {
      var data;
      try {
        data = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      handle(data);
    };
    socket.onclose = function (event) {
      socket = null;
      root.dataset.connection = "closed";
      pendingSend = null;
      if (leaving) return;
      if (event.code === 4404) {
        gone = true;
        showError("This conversation no longer exists, or you no longer have access to it.");
        updateControls();
        return;
      }
      var delay = Math.min(30000, 1000 * Math.pow(2, attempt));
      attempt += 1;
      setState("Connection lost; reconnecting in " + Math.round(delay / 1000) + " s…");
      updateControls();
      window.setTimeout(connect, delay);
    };
  }

  // --- the form ------------------------------------------------------------------------------------

  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text || streamingId !== null || pendingSend !== null) return;
      clearError();
      if (send({ type: "send", content: text })) pendingSend = text;
      updateControls();
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    stopButton.addEventListener("click", function () {
      send({ type: "stop" });
    });
  }

  window.addEventListener("pagehide", function () {
    leaving = true;
    if (socket) socket.close();
  });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;  // back from the page cache: the socket was closed on leaving
    leaving = false;
    if (!socket && !gone) connect();
  });

  // Answers rendered by the server arrive as plain text: render their Markdown now.
  list.querySelectorAll("[data-markdown]").forEach(function (body) {
    markdown.renderInto(body, body.textContent);
  });
  list.scrollTop = list.scrollHeight;
  updateControls();
  connect();
})();
