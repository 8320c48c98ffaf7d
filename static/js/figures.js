// Draw the plotly figures a page embeds as JSON (<script id="figures-data">) into
// their <div id="figure-<id>">; plotly.js is served locally (no CDN).
(function () {
  "use strict";
  function draw() {
    var node = document.getElementById("figures-data");
    if (!node || !window.Plotly) return;
    JSON.parse(node.textContent).forEach(function (f) {
      var div = document.getElementById("figure-" + f.id);
      if (!div) return;
      // a responsive plot fills its div: give the div the figure's height, or it overflows
      if (f.layout && f.layout.height) div.style.height = f.layout.height + "px";
      window.Plotly.newPlot(div, f.data, f.layout, {responsive: true, displaylogo: false});
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw); else draw();
})();
