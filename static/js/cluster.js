// Click to merge on the cluster report: a click on a node (●) of a dendrogram, or a lasso
// in the embedding, chooses data sets (the points' customdata are data set ids); the bar
// at the foot of the window (#cluster-merge) then lists them and posts their identifiers
// to the cluster_merge view, which queues scale (the others left out) and then merge.
// The figures are drawn by report.js: their events are bound once plotly has drawn them.
(function () {
  "use strict";
  var CHOSEN = "#1f6feb", NODE = "#fff", WAIT_MS = 250, WAIT_MAX = 240;

  function init() {
    var form = document.getElementById("cluster-merge");
    var dataNode = document.getElementById("cluster-datasets");
    if (!form || !dataNode) return;
    var byId = {};
    JSON.parse(dataNode.textContent).forEach(function (d) { byId[d.id] = d; });
    var holder = document.getElementById("cluster-identifiers");
    var count = document.getElementById("cluster-chosen-count");
    var from = document.getElementById("cluster-chosen-from");
    var names = document.getElementById("cluster-chosen-names");
    var button = document.getElementById("cluster-merge-button");
    var dendrograms = (form.getAttribute("data-dendrograms") || "").split(/\s+/).filter(Boolean);

    function choose(ids, source) {
      var seen = {}, chosen = [];
      (ids || []).forEach(function (k) {
        if (byId[k] && !seen[k]) { seen[k] = true; chosen.push(byId[k]); }
      });
      chosen.sort(function (a, b) { return a.id - b.id; });
      holder.replaceChildren();
      chosen.forEach(function (d) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = "identifiers";
        input.value = d.identifier;
        holder.appendChild(input);
      });
      count.textContent = String(chosen.length);
      from.textContent = source ? "(" + source + ")" : "";
      names.textContent = chosen.map(function (d) { return d.name; }).join(", ");
      button.disabled = chosen.length < 2;
      button.textContent = chosen.length < 2 ? "Choose at least two data sets"
        : "Scale and merge these " + chosen.length + " data sets";
      form.hidden = chosen.length === 0;
      document.body.classList.toggle("with-cluster-bar", chosen.length > 0);
    }

    function markNode(div, pointNumber) {
      (div.data || []).forEach(function (trace, t) {
        if (trace.name !== "cluster nodes") return;
        var colours = trace.x.map(function (_, k) { return k === pointNumber ? CHOSEN : NODE; });
        window.Plotly.restyle(div, {"marker.color": [colours]}, [t]);
      });
    }

    function clearMarks(except) {
      dendrograms.forEach(function (id) {
        var div = document.getElementById(id);
        if (div && div !== except && div.data) markNode(div, -1);
      });
    }

    function whenDrawn(id, bind) {
      var tries = 0;
      (function wait() {
        var div = document.getElementById(id);
        if (div && typeof div.on === "function" && div._fullLayout) { bind(div); return; }
        if (++tries < WAIT_MAX) setTimeout(wait, WAIT_MS);
      })();
    }

    dendrograms.forEach(function (id) {
      whenDrawn(id, function (div) {
        div.on("plotly_click", function (event) {
          var p = event && event.points && event.points[0];
          if (!p || !p.data || p.data.name !== "cluster nodes" || !Array.isArray(p.customdata)) return;
          clearMarks(div);
          markNode(div, p.pointNumber);
          var title = div.closest("section") && div.closest("section").querySelector("h2");
          choose(p.customdata, "a node of the " + (title ? title.textContent.split(" (")[0].toLowerCase() : "tree"));
        });
      });
    });
    var embedding = form.getAttribute("data-embedding");
    if (embedding) {
      whenDrawn(embedding, function (div) {
        div.on("plotly_selected", function (event) {
          if (!event || !event.points) return;
          clearMarks(null);
          choose(event.points.map(function (p) { return p.customdata; }), "lasso in the embedding");
        });
        div.on("plotly_deselect", function () { choose([], ""); });
      });
    }
    document.getElementById("cluster-clear").addEventListener("click", function () {
      clearMarks(null);
      choose([], "");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
