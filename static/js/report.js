// Report page: draw the run's plotly figures from report.json; while the run is queued
// or running, fetch it again every 3 s and redraw tables, figures, the run's status line
// and the tab title ("▶ 45 % integrate #12 — xtalweb"). When a run the page was drawn for
// as queued or running finishes, the page reloads: its files, panels and forms appear.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-report-url");
  if (!url) return;
  var PERIOD_MS = 3000;
  var drawnActive = script.getAttribute("data-active") === "1";
  var titleRest = script.getAttribute("data-title-rest") || " — xtalweb";

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function drawTables(tables) {
    tables.forEach(function (t) {
      var tbody = document.querySelector("#table-" + t.id + " tbody");
      if (!tbody) return;
      var frag = document.createDocumentFragment();
      t.rows.forEach(function (r, i) {
        var status = (t.row_status || [])[i] || "";
        var tr = el("tr", null, status ? "row-" + status : "");
        r.forEach(function (c) { tr.appendChild(el("td", (c === null || c === undefined) ? "—" : c)); });
        frag.appendChild(tr);
      });
      if (!t.rows.length) {
        var tr = el("tr", null, "empty"), td = el("td", "Nothing yet.");
        td.colSpan = t.columns.length; tr.appendChild(td); frag.appendChild(tr);
      }
      tbody.replaceChildren(frag);
      var list = document.getElementById("highlights-" + t.id);
      if (list && t.highlights) {
        var items = document.createDocumentFragment();
        t.highlights.forEach(function (h) {
          items.appendChild(el("li", "Exp " + h.exp_id + " (" + h.sweep + "): " + h.reasons.join("; "), "row-bad"));
        });
        list.replaceChildren(items);
      }
    });
  }

  function drawFigures(figures) {
    if (!window.Plotly) return;
    figures.forEach(function (f) {
      var div = document.getElementById("figure-" + f.id);
      if (!div) return;
      // a responsive plot fills its div: give the div the figure's height, or it is squeezed
      if (f.layout && f.layout.height) div.style.height = f.layout.height + "px";
      window.Plotly.react(div, f.data, f.layout, {responsive: true, displaylogo: false});
    });
  }

  // the status line under the heading (templates/reports/stagerun_report.html, same markup)
  function drawState(state) {
    if (!state) return;
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
    var err = p.querySelector(".run-error");
    if (state.error) {
      if (!err) { err = el("span"); err.setAttribute("role", "alert"); p.appendChild(err); }
      err.className = (state.status === "partial" ? "run-partial" : "error") + " run-error";
      err.textContent = state.error;
    } else if (err) {
      err.remove();
    }
  }

  function load() {
    if (document.hidden && drawnActive) { setTimeout(load, PERIOD_MS); return; }
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { if (!resp.ok) throw new Error(resp.status); return resp.json(); })
      .then(function (data) {
        var active = data.status === "queued" || data.status === "running";
        drawState(data.state);
        if (drawnActive && !active) { window.location.reload(); return; }
        drawTables(data.tables);
        drawFigures(data.figures);
        if (active) setTimeout(load, PERIOD_MS);
      })
      .catch(function () { setTimeout(load, PERIOD_MS * 2); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", load); else load();
})();
