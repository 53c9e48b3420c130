// A small, safe Markdown renderer for model answers.
//
// Model text is untrusted. Every character of it is HTML-escaped FIRST; only then are the tags of a
// small subset put around the escaped text: paragraphs and line breaks, **bold**, *italic*, `code`,
// fenced code blocks, headings, bullet and numbered lists, and links to http(s) URLs only (with
// rel="noopener noreferrer nofollow"). Nothing else becomes markup: a <script> or <img onerror> in
// an answer is shown as text. renderInto() is the only place that assigns innerHTML, and it assigns
// render()'s output, never the model's text itself.
(function (global) {
  "use strict";

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  // Placeholders keep finished pieces (code spans, links) away from later rules. NUL never
  // survives from the input: render() replaces it first.
  var SLOT = "\u0000";
  var SLOT_RE = /\u0000(\d+)\u0000/g;
  // An escaped quote or angle bracket ends a bare URL.
  var BARE_URL = /\bhttps?:\/\/(?:(?!&quot;|&#39;|&lt;|&gt;)[^\s\u0000])+/gi;
  var LINK_ATTRS = ' rel="noopener noreferrer nofollow" target="_blank"';

  function emphasis(s) {
    s = s.replace(/\*\*(?=\S)([^\n]*?\S)\*\*/g, "<strong>$1</strong>");
    return s.replace(/(^|[^*\w])\*([^\s*](?:[^*\n]*?[^\s*])?)\*(?![*\w])/g, "$1<em>$2</em>");
  }

  // `escaped` is already HTML-escaped; the result is HTML.
  function inline(escaped) {
    var slots = [];
    function keep(html) {
      slots.push(html);
      return SLOT + (slots.length - 1) + SLOT;
    }
    var s = escaped.replace(/`([^`\n]+)`/g, function (_, code) { return keep("<code>" + code + "</code>"); });
    s = s.replace(/\[([^\]\n]+)\]\(\s*(https?:\/\/[^\s()]+)\s*\)/gi, function (_, text, url) {
      return keep('<a href="' + url + '"' + LINK_ATTRS + ">" + emphasis(text) + "</a>");
    });
    s = s.replace(BARE_URL, function (url) {
      var trailing = /(?:[.,:;!?)\]]|&amp;)+$/.exec(url);
      var tail = trailing ? trailing[0] : "";
      url = url.slice(0, url.length - tail.length);
      return keep('<a href="' + url + '"' + LINK_ATTRS + ">" + url + "</a>") + tail;
    });
    s = emphasis(s);
    while (s.indexOf(SLOT) >= 0) {  // a link's text may hold a code span: restore until none is left
      s = s.replace(SLOT_RE, function (_, i) { return slots[Number(i)]; });
    }
    return s;
  }

  function render(text) {
    var lines = String(text == null ? "" : text).replace(/\u0000/g, "\uFFFD").replace(/\r\n?/g, "\n").split("\n");
    var html = [];
    var paragraph = [];
    var list = null;  // {type: "ul" | "ol", start, items}

    function flushParagraph() {
      if (!paragraph.length) return;
      html.push("<p>" + paragraph.map(function (line) { return inline(escapeHtml(line)); }).join("<br>") + "</p>");
      paragraph = [];
    }
    function flushList() {
      if (!list) return;
      var start = list.type === "ol" && list.start !== 1 ? ' start="' + list.start + '"' : "";
      html.push("<" + list.type + start + ">" + list.items.map(function (item) {
        return "<li>" + inline(escapeHtml(item)) + "</li>";
      }).join("") + "</" + list.type + ">");
      list = null;
    }

    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      var fence = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/.exec(line);
      if (fence) {
        flushParagraph();
        flushList();
        var code = [];
        var closing = new RegExp("^ {0,3}" + fence[1].charAt(0) + "{" + fence[1].length + ",}\\s*$");
        for (i++; i < lines.length && !closing.test(lines[i]); i++) code.push(lines[i]);
        var language = fence[2] ? ' class="language-' + escapeHtml(fence[2]) + '"' : "";
        html.push("<pre><code" + language + ">" + escapeHtml(code.join("\n")) + "</code></pre>");
        continue;
      }
      if (!line.trim()) {
        flushParagraph();
        flushList();
        continue;
      }
      var heading = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
      if (heading) {
        flushParagraph();
        flushList();
        // Answers sit under the page's own h1 and h2: "#" becomes h3.
        var level = Math.min(6, heading[1].length + 2);
        html.push("<h" + level + ">" + inline(escapeHtml(heading[2])) + "</h" + level + ">");
        continue;
      }
      var bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
      var numbered = bullet ? null : /^\s*(\d{1,9})[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        var type = bullet ? "ul" : "ol";
        flushParagraph();
        if (list && list.type !== type) flushList();
        if (!list) list = { type: type, start: numbered ? parseInt(numbered[1], 10) : 1, items: [] };
        list.items.push(bullet ? bullet[1] : numbered[2]);
        continue;
      }
      if (list && /^\s+\S/.test(line)) {  // an indented line continues the list item
        list.items[list.items.length - 1] += " " + line.trim();
        continue;
      }
      flushList();
      paragraph.push(line);
    }
    flushParagraph();
    flushList();
    return html.join("");
  }

  function renderInto(element, text) {
    element.innerHTML = render(text);  // render() escapes everything it does not build itself
    element.classList.add("rendered");
  }

  global.HartonomousMarkdown = { render: render, renderInto: renderInto, escapeHtml: escapeHtml };
})(window);
