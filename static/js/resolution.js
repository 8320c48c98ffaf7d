// The d_min slider of the estimate_resolution report: the statistics at each trial cut are
// in the page (#d-min-cuts, from the run's summary); moving the slider shows the overall
// and outer-shell numbers of the chosen cut at once (no request), sets the d_min of the
// "Merge at this d_min" form and moves the green dotted line on the CC½ figure.
(function () {
  "use strict";

  function format(value, spec) {
    if (value === null || value === undefined || typeof value !== "number" || !isFinite(value)) return "—";
    if (spec === "d") return String(Math.round(value));
    var m = /^\.(\d+)f$/.exec(spec || "");
    return m ? value.toFixed(parseInt(m[1], 10)) : String(value);
  }

  function init() {
    var data = document.getElementById("d-min-cuts");
    var range = document.getElementById("d-min-range");
    if (!data || !range) return;
    var cuts = JSON.parse(data.textContent);
    if (!cuts.length) return;
    var output = document.getElementById("d-min-value");
    var outerRange = document.getElementById("d-min-outer-range");
    var input = document.getElementById("d-min-input");
    var param = document.getElementById("d-min-param");
    var cellsOf = document.querySelectorAll("#d-min-statistics td[data-part]");
    var figureId = range.getAttribute("data-figure");

    function moveLine(dMin) {
      var div = figureId && document.getElementById(figureId);
      if (!div || !window.Plotly || !div.layout || !div.layout.shapes) return;
      var shapes = div.layout.shapes;
      for (var k = 0; k < shapes.length; k++) {
        if (shapes[k].name === "slider") {
          var x = 1 / (dMin * dMin), update = {};
          update["shapes[" + k + "].x0"] = x;
          update["shapes[" + k + "].x1"] = x;
          window.Plotly.relayout(div, update);
          return;
        }
      }
    }

    function show(index) {
      var cut = cuts[Math.max(0, Math.min(cuts.length - 1, index))];
      output.textContent = cut.d_min.toFixed(2) + " Å";
      var dMax = cut.outer && cut.outer.d_max;
      if (outerRange) {
        outerRange.textContent = (typeof dMax === "number" ? dMax.toFixed(2) + " – " : "to ") + cut.d_min.toFixed(2) + " Å";
      }
      Array.prototype.forEach.call(cellsOf, function (td) {
        var part = cut[td.getAttribute("data-part")] || {};
        td.textContent = format(part[td.getAttribute("data-key")], td.getAttribute("data-format"));
      });
      if (input) input.value = cut.d_min.toFixed(3);
      if (param) param.textContent = cut.d_min.toFixed(3);
      moveLine(cut.d_min);
    }

    range.addEventListener("input", function () { show(parseInt(range.value, 10)); });
    range.addEventListener("change", function () { show(parseInt(range.value, 10)); });
    show(parseInt(range.value, 10));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
