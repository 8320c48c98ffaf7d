// Live project page: poll status.json every 2 s and redraw the sweeps and runs tables.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-status-url");
  if (!url) return;
  var PERIOD_MS = 2000;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fixed(x, n) { return (x === null || x === undefined) ? "—" : Number(x).toFixed(n); }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "—"; }
  function row(cells, cls) {
    var tr = el("tr", null, cls);
    cells.forEach(function (c) {
      var td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      tr.appendChild(td);
    });
    return tr;
  }
  function replaceBody(table, rows, emptyText, ncols) {
    var tbody = document.querySelector(table + " tbody");
    if (!tbody) return;
    var frag = document.createDocumentFragment();
    if (!rows.length) {
      var tr = el("tr", null, "empty"), td = el("td", emptyText);
      td.colSpan = ncols; tr.appendChild(td); frag.appendChild(tr);
    }
    rows.forEach(function (r) { frag.appendChild(r); });
    tbody.replaceChildren(frag);
  }

  function sweepRow(s) {
    var ir = s.image_range || [], osc = s.oscillation || [], bc = s.beam_centre_px || [];
    var images = String(s.n_images) + (ir[0] !== null && ir[0] !== undefined ? " (" + ir[0] + "–" + ir[1] + ")" : "");
    var oscText = (osc[0] === null || osc[0] === undefined) ? "—" : fixed(osc[0], 3) + " + " + fixed(osc[1], 3);
    var beam = (bc[0] === null || bc[0] === undefined) ? "—" : fixed(bc[0], 2) + ", " + fixed(bc[1], 2);
    return row([s.name, images, oscText, s.detector || "—", fixed(s.wavelength, 5), beam,
                fixed(s.distance_mm, 2), s.included ? "yes" : "no"]);
  }

  function runRow(r) {
    var status = el("span");
    status.appendChild(el("span", r.status, "badge " + r.status));
    if (r.error) {
      var err = el("div", r.error, "error run-error");
      err.setAttribute("role", "alert");
      status.appendChild(err);
    }
    var prog = el("span");
    var bar = el("progress"); bar.max = 1; bar.value = r.progress || 0;
    prog.appendChild(bar);
    prog.appendChild(document.createTextNode(" " + Math.round((r.progress || 0) * 100) + "%"));
    var log = el("a", "log"); log.href = r.log_url;
    return row([String(r.id), r.stage.replace("_", " "), status, prog, when(r.started), when(r.finished), log],
               "status-" + r.status);
  }

  function refresh() {
    if (document.hidden) { setTimeout(refresh, PERIOD_MS); return; }
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { if (!resp.ok) throw new Error(resp.status); return resp.json(); })
      .then(function (data) {
        replaceBody("#sweeps", data.sweeps.map(sweepRow), "No sweeps imported yet.", 8);
        replaceBody("#runs", data.runs.map(runRow), "No stage runs yet.", 7);
      })
      .catch(function () { /* keep the last view; try again next time */ })
      .finally(function () { setTimeout(refresh, PERIOD_MS); });
  }
  setTimeout(refresh, PERIOD_MS);
})();
