// Image viewer (templates/projects/viewer.html): one sweep's images, rendered by the server
// as PNG views of the visible rectangle (xtalweb/projects/image_render.py), with the
// chosen run's spots, predictions, shoeboxes and resolution rings drawn over them
// (overlay.json). Drag to pan, wheel to zoom, ←/→ for the previous/next image; the pointer
// shows the pixel's count and resolution (pixel.json) and the Miller index of the
// predicted or indexed spot under it.
(function () {
  "use strict";

  // the run selector works with or without the viewer (an error page keeps it)
  var runSelect = document.getElementById("viewer-run");
  if (runSelect) {
    runSelect.addEventListener("change", function () { runSelect.form.submit(); });
  }
  var configEl = document.getElementById("viewer-config");
  if (!configEl) return;
  var cfg = JSON.parse(configEl.textContent);

  var stage = document.getElementById("viewer-stage");
  var imageCanvas = document.getElementById("viewer-image");
  var overlayCanvas = document.getElementById("viewer-overlay");
  var message = document.getElementById("viewer-message");
  var $ = function (id) { return document.getElementById(id); };
  var NX = cfg.image_size[0], NY = cfg.image_size[1];
  var COLOURS = {strong: "#1a9641", indexed: "#d7191c", predicted: "#c51b7d", prf: "#7b3294",
                 sum: "#e66101", failed: "#8c8c8c", rings: "#e08214", beam: "#d7191c"};

  var state = {
    image: cfg.image, run: cfg.run, panel: 0,
    cx: NX / 2, cy: NY / 2, scale: 1,        // view centre (image px) and CSS px per image px
    width: 0, height: 0, dpr: window.devicePixelRatio || 1,
    bitmap: null,                            // {img, region: [x0, y0, x1, y1], image}
    overlay: null,                           // overlay.json of state.image
    layers: {rings: true, strong: true, indexed: true, predicted: true, shoeboxes: true},
    cmap: "greys", mask: true, auto: true, lo: null, hi: null,
    hover: null, seq: 0, overlaySeq: 0
  };

  function setMessage(text, isError) {
    message.textContent = text || "";
    message.className = "viewer-message" + (isError ? " error" : "");
  }

  // --- coordinates --------------------------------------------------------------------
  function toScreen(x, y) {
    return {left: (x - state.cx) * state.scale + state.width / 2, top: (y - state.cy) * state.scale + state.height / 2};
  }
  function toImage(left, top) {
    return {x: (left - state.width / 2) / state.scale + state.cx, y: (top - state.height / 2) / state.scale + state.cy};
  }
  function fit() {
    state.scale = Math.min(state.width / NX, state.height / NY);
    state.cx = NX / 2;
    state.cy = NY / 2;
  }
  function resize() {
    var r = stage.getBoundingClientRect();
    state.width = Math.max(1, Math.round(r.width));
    state.height = Math.max(1, Math.round(r.height));
    state.dpr = window.devicePixelRatio || 1;
    [imageCanvas, overlayCanvas].forEach(function (c) {
      c.width = Math.round(state.width * state.dpr);
      c.height = Math.round(state.height * state.dpr);
    });
  }

  // --- the image ----------------------------------------------------------------------
  function visibleRegion() {
    var a = toImage(0, 0), b = toImage(state.width, state.height);
    var mx = 0.1 * (b.x - a.x), my = 0.1 * (b.y - a.y);  // a margin: small pans need no new view
    return [Math.max(0, Math.floor(a.x - mx)), Math.max(0, Math.floor(a.y - my)),
            Math.min(NX, Math.ceil(b.x + mx)), Math.min(NY, Math.ceil(b.y + my))];
  }

  function imageUrl() {
    var r = visibleRegion();
    var w = Math.max(1, Math.ceil((r[2] - r[0]) * state.scale * state.dpr));
    var h = Math.max(1, Math.ceil((r[3] - r[1]) * state.scale * state.dpr));
    var q = new URLSearchParams({image: state.image, panel: state.panel, x0: r[0], y0: r[1], x1: r[2], y1: r[3],
                                 w: Math.min(w, 4096), h: Math.min(h, 4096), cmap: state.cmap,
                                 mask: state.mask ? "1" : "0", run: state.run === null ? "none" : state.run});
    if (!state.auto && state.lo !== null && state.hi !== null) { q.set("lo", state.lo); q.set("hi", state.hi); }
    return cfg.urls.image + "?" + q.toString();
  }

  function loadImage() {
    var seq = ++state.seq;
    var image = state.image;
    var region = visibleRegion();
    if (region[2] <= region[0] || region[3] <= region[1]) {  // panned off the panel: nothing to fetch
      state.bitmap = null;
      drawImage();
      return;
    }
    var t0 = performance.now();
    setMessage("loading image " + image + " …");
    fetch(imageUrl(), {credentials: "same-origin"})
      .then(function (resp) {
        if (!resp.ok) return resp.text().then(function (t) { throw new Error(t || ("HTTP " + resp.status)); });
        var region = (resp.headers.get("X-Region") || "").split(",").map(Number);
        var levels = (resp.headers.get("X-Levels") || "").split(",").map(Number);
        var info = {region: region, levels: levels, binning: resp.headers.get("X-Binning"),
                    ms: resp.headers.get("X-Render-Ms")};
        return resp.blob().then(function (blob) { return decode(blob).then(function (img) { return [img, info]; }); });
      })
      .then(function (res) {
        if (seq !== state.seq) return;  // a newer view was asked for meanwhile
        var img = res[0], info = res[1];
        state.bitmap = {img: img, region: info.region, image: image};
        if (state.auto) {
          state.lo = info.levels[0]; state.hi = info.levels[1];
          $("level-lo").value = info.levels[0]; $("level-hi").value = info.levels[1];
        }
        $("info-levels").textContent = info.levels[0] + " – " + info.levels[1] + (state.auto ? " (auto)" : "");
        $("info-binning").textContent = info.binning === "1" ? "none: image pixels as they are"
          : "the brightest of " + info.binning + "×" + info.binning + " pixels";
        $("info-render").textContent = Math.round(performance.now() - t0) + " ms (server " + info.ms + " ms)";
        drawImage();
        stage.setAttribute("data-image-loaded", String(image));
        setMessage("");
      })
      .catch(function (err) {
        if (seq !== state.seq) return;
        setMessage(String(err.message || err), true);
      });
  }

  function decode(blob) {
    if (window.createImageBitmap) return window.createImageBitmap(blob);
    return new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = reject;
      img.src = URL.createObjectURL(blob);
    });
  }

  function drawImage() {
    var ctx = imageCanvas.getContext("2d");
    ctx.setTransform(state.dpr, 0, 0, state.dpr, 0, 0);
    ctx.clearRect(0, 0, state.width, state.height);
    var b = state.bitmap;
    if (!b) return;
    var p = toScreen(b.region[0], b.region[1]);
    var w = (b.region[2] - b.region[0]) * state.scale, h = (b.region[3] - b.region[1]) * state.scale;
    ctx.imageSmoothingEnabled = state.scale * state.dpr < 1 ? true : false;
    ctx.drawImage(b.img, p.left, p.top, w, h);
  }

  var reloadTimer = null;
  function redraw(reload) {
    drawImage();
    drawOverlay();
    if (reload) {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(loadImage, 140);
    }
  }

  // --- the overlay ----------------------------------------------------------------------
  function loadOverlay() {
    var seq = ++state.overlaySeq;
    var image = state.image;
    var q = new URLSearchParams({image: image, panel: state.panel, run: state.run === null ? "none" : state.run});
    fetch(cfg.urls.overlay + "?" + q.toString(), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
          return body;
        });
      })
      .then(function (body) {
        if (seq !== state.overlaySeq) return;
        state.overlay = body;
        var parts = [];
        Object.keys(body.counts).forEach(function (k) { parts.push(body.counts[k] + " " + k); });
        $("overlay-counts").textContent = parts.join(", ") || "—";
        $("info-lattices").textContent = (body.lattices || []).map(function (l) {
          return l.space_group + " " + l.unit_cell.map(function (v) { return v.toFixed(2); }).join(", ");
        }).join("; ") || "—";
        drawOverlay();
        stage.setAttribute("data-overlay-loaded", String(image));
      })
      .catch(function (err) {
        if (seq !== state.overlaySeq) return;
        state.overlay = null;
        drawOverlay();
        setMessage(String(err.message || err), true);
      });
  }

  function drawOverlay() {
    var ctx = overlayCanvas.getContext("2d");
    ctx.setTransform(state.dpr, 0, 0, state.dpr, 0, 0);
    ctx.clearRect(0, 0, state.width, state.height);
    var o = state.overlay;
    if (!o) return;
    var s = state.scale;
    var L = o.layers;
    if (state.layers.rings) drawRings(ctx, o);
    if (o.beam_centre) {
      var c = toScreen(o.beam_centre[0], o.beam_centre[1]);
      ctx.strokeStyle = COLOURS.beam; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(c.left - 8, c.top); ctx.lineTo(c.left + 8, c.top);
      ctx.moveTo(c.left, c.top - 8); ctx.lineTo(c.left, c.top + 8); ctx.stroke();
    }
    if (state.layers.shoeboxes && L.shoeboxes) {
      ctx.lineWidth = 1;
      L.shoeboxes.bbox.forEach(function (b, i) {
        ctx.strokeStyle = COLOURS[L.shoeboxes.status[i]] || COLOURS.failed;
        var p = toScreen(b[0], b[1]);
        ctx.strokeRect(p.left, p.top, Math.max(2, (b[2] - b[0]) * s), Math.max(2, (b[3] - b[1]) * s));
      });
    }
    if (state.layers.strong && L.strong) {
      ctx.strokeStyle = COLOURS.strong; ctx.lineWidth = 1;
      var boxes = s > 0.6;  // boxes only when they are bigger than a few screen pixels
      L.strong.xy.forEach(function (xy, i) {
        var p = toScreen(xy[0], xy[1]);
        if (boxes) {
          var b = L.strong.bbox[i], q = toScreen(b[0], b[1]);
          ctx.strokeRect(q.left, q.top, (b[2] - b[0]) * s, (b[3] - b[1]) * s);
        } else {
          ctx.strokeRect(p.left - 3, p.top - 3, 6, 6);
        }
      });
    }
    var r = Math.max(4, Math.min(12, 2.5 * s));
    if (state.layers.indexed && L.indexed) {
      ctx.strokeStyle = COLOURS.indexed; ctx.lineWidth = 1.2;
      L.indexed.xy.forEach(function (xy) {
        var p = toScreen(xy[0], xy[1]);
        ctx.beginPath(); ctx.arc(p.left, p.top, r, 0, 2 * Math.PI); ctx.stroke();
      });
    }
    if (state.layers.predicted && L.predicted) {
      ctx.strokeStyle = COLOURS.predicted; ctx.lineWidth = 1.2;
      var k = Math.max(3, r * 0.7);
      ctx.beginPath();
      L.predicted.xy.forEach(function (xy) {
        var p = toScreen(xy[0], xy[1]);
        ctx.moveTo(p.left - k, p.top); ctx.lineTo(p.left + k, p.top);
        ctx.moveTo(p.left, p.top - k); ctx.lineTo(p.left, p.top + k);
      });
      ctx.stroke();
    }
    if (state.hover && state.hover.spot) {  // ring the spot whose index is shown
      var h = toScreen(state.hover.spot.xy[0], state.hover.spot.xy[1]);
      ctx.strokeStyle = "#ffbf00"; ctx.lineWidth = 2.5;
      ctx.beginPath(); ctx.arc(h.left, h.top, r + 4, 0, 2 * Math.PI); ctx.stroke();
    }
  }

  function drawRings(ctx, o) {
    ctx.strokeStyle = COLOURS.rings; ctx.lineWidth = 1; ctx.setLineDash([6, 4]);
    ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = COLOURS.rings;
    o.rings.forEach(function (ring) {
      ctx.beginPath();
      var pen = false, label = null;
      ring.points.forEach(function (pt) {
        if (!pt) { pen = false; return; }
        var p = toScreen(pt[0], pt[1]);
        if (pen) ctx.lineTo(p.left, p.top); else ctx.moveTo(p.left, p.top);
        pen = true;
        if (p.left > 0 && p.top > 10 && p.left < state.width - 50 && p.top < state.height &&
            (!label || p.top < label.top)) label = p;  // the topmost visible point
      });
      ctx.stroke();
      if (label) {  // on a light patch, readable over spots
        var text = ring.d + " Å", w = ctx.measureText(text).width;
        ctx.fillStyle = "rgba(255, 255, 255, 0.75)";
        ctx.fillRect(label.left + 1, label.top - 15, w + 4, 14);
        ctx.fillStyle = COLOURS.rings;
        ctx.fillText(text, label.left + 3, label.top - 4);
      }
    });
    ctx.setLineDash([]);
  }

  // --- hover ------------------------------------------------------------------------------
  function nearestSpot(x, y) {
    var o = state.overlay;
    if (!o) return null;
    var L = o.layers, best = null;
    var reach = 8 / state.scale;  // 8 screen pixels, in image pixels
    function consider(layer, name) {
      if (!layer || !state.layers[name] || !layer.hkl) return;
      layer.xy.forEach(function (xy, i) {
        var d = Math.hypot(xy[0] - x, xy[1] - y);
        if (d <= reach && (!best || d < best.dist)) best = {dist: d, xy: xy, hkl: layer.hkl[i], layer: name, i: i};
      });
    }
    consider(L.predicted, "predicted");
    consider(L.indexed, "indexed");
    if (!best && L.shoeboxes && state.layers.shoeboxes) {  // inside an integrated shoebox
      L.shoeboxes.bbox.forEach(function (b, i) {
        if (x >= b[0] && x < b[2] && y >= b[1] && y < b[3] && !best) {
          best = {dist: 0, xy: L.shoeboxes.xy[i], hkl: L.shoeboxes.hkl[i], layer: "shoeboxes", i: i};
        }
      });
    }
    return best;
  }

  var pixelTimer = null, pixelSeq = 0;
  function hover(left, top) {
    var p = toImage(left, top);
    if (p.x < 0 || p.y < 0 || p.x >= NX || p.y >= NY) {
      $("hover-xy").textContent = "—";
      return;
    }
    $("hover-xy").textContent = p.x.toFixed(1) + ", " + p.y.toFixed(1);
    var spot = nearestSpot(p.x, p.y);
    state.hover = {x: p.x, y: p.y, spot: spot};
    if (spot) {
      $("hover-hkl").textContent = spot.hkl.join(" ");
      var L = state.overlay.layers, text = spot.layer;
      if (spot.layer === "shoeboxes") {
        var isig = L.shoeboxes.i_sigma[spot.i];
        text = "shoebox, " + L.shoeboxes.status[spot.i] + (isig === null ? "" : ", I/σ " + isig);
      }
      $("hover-spot").textContent = text + " at " + spot.xy[0].toFixed(1) + ", " + spot.xy[1].toFixed(1);
    } else {
      $("hover-hkl").textContent = "—";
      $("hover-spot").textContent = "—";
    }
    drawOverlay();
    clearTimeout(pixelTimer);
    pixelTimer = setTimeout(function () { pixel(p.x, p.y); }, 60);
  }

  function pixel(x, y) {
    var seq = ++pixelSeq;
    var q = new URLSearchParams({image: state.image, panel: state.panel, x: x.toFixed(2), y: y.toFixed(2),
                                 run: state.run === null ? "none" : state.run});
    fetch(cfg.urls.pixel + "?" + q.toString(), {credentials: "same-origin"})
      .then(function (resp) { return resp.json(); })
      .then(function (body) {
        if (seq !== pixelSeq) return;
        if (body.error) { $("hover-value").textContent = body.error; return; }
        $("hover-value").textContent = body.value + (body.status === "ok" ? "" : " (" + body.status + ")");
        $("hover-d").textContent = body.d === null ? "—" : body.d.toFixed(body.d < 10 ? 3 : 1) + " Å";
      })
      .catch(function () { /* the next move asks again */ });
  }

  // --- controls ---------------------------------------------------------------------------
  function setImage(n) {
    n = Math.max(cfg.first, Math.min(cfg.last, Math.round(Number(n))));
    if (!isFinite(n)) return;
    state.image = n;
    $("image-slider").value = n; $("image-number").value = n; $("image-label").textContent = n;
    var runImage = $("viewer-run-image");
    if (runImage) runImage.value = n;
    var q = new URLSearchParams(window.location.search);
    q.set("image", n);
    if (state.run !== null) q.set("run", state.run);
    window.history.replaceState(null, "", cfg.urls.page + "?" + q.toString());
    clearTimeout(imageTimer);
    imageTimer = setTimeout(function () { loadImage(); loadOverlay(); }, 80);
  }
  var imageTimer = null;

  $("image-slider").addEventListener("input", function (e) { setImage(e.target.value); });
  $("image-number").addEventListener("change", function (e) { setImage(e.target.value); });
  $("image-prev").addEventListener("click", function () { setImage(state.image - 1); });
  $("image-next").addEventListener("click", function () { setImage(state.image + 1); });
  $("colour-map").addEventListener("change", function (e) { state.cmap = e.target.value; loadImage(); });
  if ($("panel-select")) {
    $("panel-select").addEventListener("change", function (e) {
      state.panel = Number(e.target.value);
      NX = cfg.panel_sizes[state.panel][0]; NY = cfg.panel_sizes[state.panel][1];
      state.bitmap = null; state.overlay = null;
      fit(); redraw(false); loadImage(); loadOverlay();
    });
  }
  $("show-mask").addEventListener("change", function (e) { state.mask = e.target.checked; loadImage(); });
  $("level-auto").addEventListener("change", function (e) { state.auto = e.target.checked; loadImage(); });
  ["level-lo", "level-hi"].forEach(function (id) {
    $(id).addEventListener("change", function () {
      var lo = Number($("level-lo").value), hi = Number($("level-hi").value);
      if (!isFinite(lo) || !isFinite(hi) || hi <= lo) { setMessage("the white level must be above the black level", true); return; }
      state.auto = false; $("level-auto").checked = false; state.lo = lo; state.hi = hi;
      loadImage();
    });
  });
  document.querySelectorAll("[data-layer]").forEach(function (box) {
    box.addEventListener("change", function () { state.layers[box.getAttribute("data-layer")] = box.checked; drawOverlay(); });
  });

  function zoomAt(factor, left, top) {
    var before = toImage(left, top);
    var fitScale = Math.min(state.width / NX, state.height / NY);
    state.scale = Math.max(fitScale / 4, Math.min(64, state.scale * factor));
    var after = toImage(left, top);
    state.cx += before.x - after.x;
    state.cy += before.y - after.y;
    redraw(true);
  }
  $("zoom-in").addEventListener("click", function () { zoomAt(2, state.width / 2, state.height / 2); });
  $("zoom-out").addEventListener("click", function () { zoomAt(0.5, state.width / 2, state.height / 2); });
  $("zoom-fit").addEventListener("click", function () { fit(); redraw(true); });
  $("zoom-one").addEventListener("click", function () { zoomAt(1 / (state.scale * state.dpr), state.width / 2, state.height / 2); });

  stage.addEventListener("wheel", function (e) {
    e.preventDefault();
    var r = stage.getBoundingClientRect();
    zoomAt(Math.pow(1.0015, -e.deltaY), e.clientX - r.left, e.clientY - r.top);
  }, {passive: false});

  var drag = null;
  stage.addEventListener("mousedown", function (e) {
    drag = {x: e.clientX, y: e.clientY, cx: state.cx, cy: state.cy, moved: false};
    stage.classList.add("panning");
  });
  window.addEventListener("mouseup", function () {
    if (drag && drag.moved) redraw(true);
    drag = null;
    stage.classList.remove("panning");
  });
  stage.addEventListener("mousemove", function (e) {
    var r = stage.getBoundingClientRect();
    if (drag) {
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
      state.cx = drag.cx - dx / state.scale;
      state.cy = drag.cy - dy / state.scale;
      redraw(false);
      return;
    }
    hover(e.clientX - r.left, e.clientY - r.top);
  });
  stage.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") { setImage(state.image - 1); e.preventDefault(); }
    else if (e.key === "ArrowRight") { setImage(state.image + 1); e.preventDefault(); }
    else if (e.key === "+" || e.key === "=") zoomAt(2, state.width / 2, state.height / 2);
    else if (e.key === "-") zoomAt(0.5, state.width / 2, state.height / 2);
  });
  window.addEventListener("resize", function () { resize(); redraw(true); });

  // for tests and the console: where an image pixel is on the page
  window.xtalViewer = {
    state: state,
    toScreen: toScreen,
    pageXY: function (x, y) {
      var r = stage.getBoundingClientRect(), p = toScreen(x, y);
      return {x: r.left + p.left, y: r.top + p.top};
    }
  };

  resize();
  fit();
  loadImage();
  loadOverlay();
})();
