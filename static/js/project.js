// Live project page: poll status.json every 2 s and redraw the pipeline overview and the
// sweeps and runs tables (with each fanned-out run's per-sweep status, progress and message,
// and the last line of a running run's log). A poll sends back the last answer's ETag: an
// unchanged status is a bodiless 304 and nothing is redrawn. The "Run / rerun" forms are
// fetched when their card is first opened (GET of the form's own URL).
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

  function bar(value) {
    var b = el("progress"); b.max = 1; b.value = value || 0;
    return b;
  }
  function errorBox(text) {
    var err = el("div", text, "error run-error");
    err.setAttribute("role", "alert");
    return err;
  }

  // per-sweep progress of a fanned-out run (find spots, index): one line per sweep
  function sweepList(sweeps) {
    var ul = el("ul", null, "sweep-progress");
    sweeps.forEach(function (s) {
      var li = el("li", null, "status-" + s.status);
      li.appendChild(el("span", s.name, "name"));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", s.status, "badge " + s.status));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(bar(s.progress));
      if (s.error) li.appendChild(errorBox(s.error));
      ul.appendChild(li);
    });
    return ul;
  }

  // "Retry failed sweeps" of a partial or failed fanned-out run (a POST with the page's CSRF token)
  function retryForm(r) {
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (!r.retry_url || !token) return null;
    var form = el("form", null, "retry");
    form.method = "post"; form.action = r.retry_url;
    var t = el("input"); t.type = "hidden"; t.name = "csrfmiddlewaretoken"; t.value = token.value;
    var b = el("button", "Retry failed sweeps"); b.type = "submit";
    form.appendChild(t); form.appendChild(b);
    return form;
  }

  function runRow(r) {
    var status = el("span");
    status.appendChild(el("span", r.status, "badge " + r.status));
    if (r.error) {
      var box = errorBox(r.error);
      if (r.status === "partial") box.className = "run-partial run-error";
      status.appendChild(box);
    }
    var retry = retryForm(r);
    if (retry) status.appendChild(retry);
    var prog = el("span");
    prog.appendChild(bar(r.progress));
    prog.appendChild(document.createTextNode(" " + Math.round((r.progress || 0) * 100) + "%"));
    if (r.sweeps && r.sweeps.length) prog.appendChild(sweepList(r.sweeps));
    if (r.log_tail) {
      var tail = el("p", r.log_tail, "log-tail meta");
      tail.title = "the last line of the log";
      prog.appendChild(tail);
    }
    var links = el("span");
    var report = el("a", "report"); report.href = r.report_url;
    var log = el("a", "log"); log.href = r.log_url;
    links.appendChild(report); links.appendChild(document.createTextNode(" · ")); links.appendChild(log);
    var parents = (r.parents && r.parents.length) ? r.parents.map(function (p) { return "#" + p; }).join(", ") : "—";
    var tr = row([String(r.id), r.stage.replace("_", " "), parents, status, prog, when(r.started), when(r.finished), links],
                 "status-" + r.status);
    tr.id = "run-" + r.id;
    return tr;
  }

  // --- the pipeline overview (templates/projects/_overview.html, the same markup) ---
  function link(text, href, cls) {
    var a = el("a", text, cls); a.href = href;
    return a;
  }
  function stageNext(n) {
    var li = el("li", null, "next-" + n.kind);
    if (n.kind === "retry") {
      var form = retryForm({retry_url: n.url});
      if (form) { form.querySelector("button").textContent = n.text; li.appendChild(form); }
      else li.textContent = n.text;
    } else if (n.url) {
      var a = link(n.text, n.url);
      if (n.kind === "download") a.setAttribute("download", "");
      li.appendChild(a);
    } else {
      li.textContent = n.text;
    }
    return li;
  }
  function stageCard(s) {
    var li = el("li", null, "stage state-" + s.state);
    li.id = "stage-" + s.stage; li.setAttribute("data-stage", s.stage);
    var head = el("div", null, "stage-head");
    head.appendChild(el("span", s.step, "step"));
    head.appendChild(el("span", s.title, "stage-title"));
    head.appendChild(el("span", s.state_label, "badge " + s.state));
    li.appendChild(head);
    if (s.alternative_of) li.appendChild(el("p", "instead of " + s.alternative_title, "stage-alt"));
    var hasProgress = s.progress !== null && s.progress !== undefined;
    if (hasProgress || s.progress_text) {
      var p = el("p", null, "stage-progress");
      if (hasProgress) {
        p.appendChild(bar(s.progress));
        p.appendChild(document.createTextNode(" "));
        p.appendChild(el("span", Math.round(s.progress * 100) + "%", "percent"));
      }
      if (s.progress_text) {
        p.appendChild(document.createTextNode(" "));
        p.appendChild(el("span", s.progress_text, "progress-text"));
      }
      li.appendChild(p);
    }
    if (s.counts && s.counts.text) li.appendChild(el("p", s.counts.text, "counts"));
    if (s.facts && s.facts.length) {
      var facts = el("p", null, "facts");
      s.facts.forEach(function (f, k) {
        if (k) facts.appendChild(document.createTextNode(" · "));
        facts.appendChild(el("span", f, "fact"));
      });
      li.appendChild(facts);
    }
    if (s.error) { var e = el("p", s.error, "stage-error"); e.setAttribute("role", "alert"); li.appendChild(e); }
    if (s.problems && s.problems.length) {
      var ul = el("ul", null, "problems");
      s.problems.forEach(function (x) {
        var item = el("li");
        if (x.name) {
          item.appendChild(link(x.name, s.run.report_url));
          item.appendChild(document.createTextNode(": "));
        }
        item.appendChild(document.createTextNode(x.reason));
        ul.appendChild(item);
      });
      if (s.problems_more) {
        var more = el("li", null, "more");
        more.appendChild(link("and " + s.problems_more + " more", s.run.report_url));
        ul.appendChild(more);
      }
      li.appendChild(ul);
    }
    if (s.note) li.appendChild(el("p", s.note, "stage-note"));
    if (s.next && s.next.length) {
      var nx = el("ul", null, "next");
      s.next.forEach(function (n) { nx.appendChild(stageNext(n)); });
      li.appendChild(nx);
    }
    if (s.run) {
      var r = el("p", null, "run-link");
      r.appendChild(link("run #" + s.run.id, s.run.report_url));
      if (s.n_runs > 1) {
        r.appendChild(document.createTextNode(" "));
        r.appendChild(el("span", "(latest of " + s.n_runs + ")", "meta"));
      }
      r.appendChild(document.createTextNode(" · "));
      r.appendChild(link("log", s.run.log_url));
      li.appendChild(r);
    }
    return li;
  }
  function drawOverview(o) {
    var list = document.getElementById("pipeline");
    if (!list || !o) return;
    var frag = document.createDocumentFragment();
    o.stages.forEach(function (s) { frag.appendChild(stageCard(s)); });
    list.replaceChildren(frag);
    var done = document.getElementById("overview-done");
    if (done) done.textContent = o.n_done + " of " + o.n_stages + " stages done";
  }

  // a "Run / rerun" card's form, fetched the first time the card is opened
  function loadForm(card) {
    var url = card.getAttribute("data-form-url"), body = card.querySelector(".run-form-body");
    if (!card.open || !url || !body || card.hasAttribute("data-loaded")) return;
    card.setAttribute("data-loaded", "loading");
    fetch(url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "text/html"}})
      .then(function (resp) { if (!resp.ok) throw new Error(resp.status + " " + resp.statusText); return resp.text(); })
      .then(function (html) { body.innerHTML = html; card.setAttribute("data-loaded", "yes"); })
      .catch(function (err) {
        card.removeAttribute("data-loaded");  // opening the card again tries again
        body.replaceChildren(el("p", "The form could not be loaded (" + err.message + "): close and open it again.",
                                "error"));
      });
  }
  document.querySelectorAll("details.run-form").forEach(function (card) {
    card.addEventListener("toggle", function () { loadForm(card); });
    loadForm(card);
  });

  // "run cosym" links to the closed <details> of its form: open it
  function openTarget() {
    var id = window.location.hash.slice(1);
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[href^='#form-']");
    var target = a && document.getElementById(a.getAttribute("href").slice(1));
    if (target && target.tagName === "DETAILS") target.open = true;
  });
  openTarget();

  var etag = null;
  function refresh() {
    if (document.hidden) { setTimeout(refresh, PERIOD_MS); return; }
    var headers = {"Accept": "application/json"};
    if (etag) headers["If-None-Match"] = etag;
    fetch(url, {credentials: "same-origin", cache: "no-store", headers: headers})
      .then(function (resp) {
        if (resp.status === 304) return null;  // nothing changed since the last answer
        if (!resp.ok) throw new Error(resp.status);
        etag = resp.headers.get("ETag");
        return resp.json();
      })
      .then(function (data) {
        if (!data) return;
        replaceBody("#sweeps", data.sweeps.map(sweepRow), "No sweeps imported yet.", 8);
        replaceBody("#runs", data.runs.map(runRow), "No stage runs yet.", 8);
        drawOverview(data.overview);
      })
      .catch(function () { /* keep the last view; try again next time */ })
      .finally(function () { setTimeout(refresh, PERIOD_MS); });
  }
  setTimeout(refresh, PERIOD_MS);
})();
