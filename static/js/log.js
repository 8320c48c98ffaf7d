// Run log page: while the run is queued or running, ask log.json every 1.5 s for what each
// part of the log (one per sweep of a fanned-out run, then the run's own) gained since the
// page's cursor, append it, and redraw the status line and the tab title
// ("▶ 45 % integrate #12 log — xtalweb"). A part that was rewritten (a retried sweep) comes
// back whole and replaces the old text. One last request after the run has finished.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-log-url");
  if (!url) return;
  var PERIOD_MS = 1500;
  var titleRest = script.getAttribute("data-title-rest") || " — xtalweb";
  var container = document.getElementById("log-parts");
  if (!container) return;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function cursors() {
    var out = [];
    container.querySelectorAll(".log-part").forEach(function (s) {
      out.push(s.getAttribute("data-key") + ":" + s.getAttribute("data-cursor"));
    });
    return out.join(",");
  }

  function section(part, index) {
    var s = document.getElementById("log-" + part.key);
    if (!s) {
      s = el("section", null, "log-part");
      s.id = "log-" + part.key;
      s.setAttribute("data-key", part.key);
      s.setAttribute("data-cursor", "0.00000000");
      if (part.title) {
        var h = el("h2", part.title + " ");
        h.appendChild(el("span", part.status, "badge " + part.status));
        s.appendChild(h);
      }
      s.appendChild(el("pre", "", "log"));
      // keep the server's order: sweeps by index, the run's own part last
      var next = container.querySelectorAll(".log-part")[index];
      container.insertBefore(s, next || null);
    }
    return s;
  }

  function drawPart(part, index) {
    var s = section(part, index);
    var pre = s.querySelector("pre");
    if (part.reset) pre.textContent = part.text;
    else if (part.text) pre.appendChild(document.createTextNode(part.text));
    s.setAttribute("data-cursor", part.cursor);
    var badge = s.querySelector("h2 .badge");
    if (badge) { badge.className = "badge " + part.status; badge.textContent = part.status; }
    return part.text.length > 0 || part.reset;
  }

  function drawState(state) {
    document.title = state.title + titleRest;
    var p = document.getElementById("run-status");
    if (!p) return;
    p.setAttribute("data-status", state.status);
    var badge = p.querySelector(".badge");
    if (badge) { badge.className = "badge " + state.status; badge.textContent = state.status; }
    var bar = p.querySelector("progress");
    if (bar) bar.value = state.progress || 0;
    var pct = p.querySelector(".percent");
    if (pct) pct.textContent = Math.round((state.progress || 0) * 100) + "%";
    var live = p.querySelector(".live");
    if (live) live.textContent = state.active ? "streaming while the run is " + state.status : "";
    var err = p.querySelector(".run-error");
    if (state.error) {
      if (!err) { err = el("span"); err.setAttribute("role", "alert"); p.appendChild(err); }
      err.className = (state.status === "partial" ? "run-partial" : "error") + " run-error";
      err.textContent = state.error;
    } else if (err) {
      err.remove();
    }
  }

  var active = script.getAttribute("data-active") === "1";
  function poll() {
    if (document.hidden) { setTimeout(poll, PERIOD_MS); return; }
    var follow = document.getElementById("log-follow");
    var more = false;
    fetch(url + "?from=" + encodeURIComponent(cursors()),
          {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { if (!resp.ok) throw new Error(resp.status); return resp.json(); })
      .then(function (data) {
        var grew = false;
        data.parts.forEach(function (part, i) {
          if (drawPart(part, i)) grew = true;
          if (part.more) more = true;
        });
        var empty = document.getElementById("log-empty");
        if (empty && grew) empty.hidden = true;
        drawState(data.state);
        if (grew && follow && follow.checked) window.scrollTo(0, document.documentElement.scrollHeight);
        var wasActive = active;
        active = data.state.active;
        // poll while the run runs; once more after it finished (its last lines); at once for more
        if (more) setTimeout(poll, 0);
        else if (active) setTimeout(poll, PERIOD_MS);
        else if (wasActive) setTimeout(poll, PERIOD_MS);
      })
      .catch(function () { setTimeout(poll, PERIOD_MS * 2); });
  }
  if (active) {
    var follow = document.getElementById("log-follow");
    if (follow && follow.checked) window.scrollTo(0, document.documentElement.scrollHeight);
    setTimeout(poll, PERIOD_MS);
  }
})();
