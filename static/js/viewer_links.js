// Report pages: a click on a point of a per-image plot opens the image viewer at that image.
// A trace that can do it carries meta.viewer, the viewer's address up to "image=" (set by
// xtalweb/reports/figures.py); report.js draws the figures, so this binds once they exist.
(function () {
  "use strict";
  function bind(div) {
    if (div.dataset.viewerBound || typeof div.on !== "function") return false;
    div.dataset.viewerBound = "1";
    div.on("plotly_click", function (ev) {
      var pt = ev && ev.points && ev.points[0];
      var meta = pt && pt.data && pt.data.meta;
      if (meta && meta.viewer && pt.x !== undefined) window.location.href = meta.viewer + encodeURIComponent(pt.x);
    });
    div.style.cursor = "pointer";
    return true;
  }
  var tries = 0;
  (function scan() {
    var pending = false;
    document.querySelectorAll(".plot").forEach(function (div) {
      if (!div.dataset.viewerBound && !bind(div)) pending = true;
    });
    if (pending && ++tries < 120) setTimeout(scan, 500);
  })();
})();
