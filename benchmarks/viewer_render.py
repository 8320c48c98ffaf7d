"""Image viewer speed: the time to serve one view of an image (read + decode, mask,
binning by maximum, levels, palette PNG) and its overlay, as the viewer's endpoints do
(xtalweb/projects/image_render.py, viewer_overlays.py), on a sweep of the simulator's
Eiger 2X 9M (3108×3262). Prints JSON.

    .venv/bin/python benchmarks/viewer_render.py [DIR]

DIR holds an NXmx sweep (``*_master.h5``) and, optionally, xtal's ``integrated.expt``/
``integrated.refl`` of it (``proc/`` below DIR is looked in too). Without DIR the sweep
is simulated into a temporary folder: ``xtal simulate preset=insulin-24 n_crystals=1
n_weak=0 n_non_isomorphous=0 n_damaged=0 n_images=20``.
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str]) -> int:
    from processing.importer import ImportParams, run_import
    from processing.io.images import apply_rectangles, open_imageset
    from xtalweb.projects import viewer_overlays as ov
    from xtalweb.projects.image_render import ImageCache, View, panel_image, render_view

    folder = argv[0] if argv else None
    tmp = None
    if folder is None:
        from processing.simulate import SimulateParams, run_simulate

        tmp = tempfile.TemporaryDirectory(prefix="viewer-bench-")
        folder = tmp.name
        run_simulate(SimulateParams(preset="insulin-24", n_crystals=1, n_weak=0, n_non_isomorphous=0,
                                    n_damaged=0, n_images=20, output_dir=folder))
    master = sorted(glob.glob(os.path.join(folder, "*_master.h5")))[0]
    experiments, _ = run_import(ImportParams(paths=(master,)))
    e = experiments[0]
    p = e.detector[0]
    cache = ImageCache()
    canvas = (1100, 1000)  # CSS px of the viewer's stage on a laptop screen

    def view_ms(i, view, fresh):
        t0 = time.perf_counter()
        if fresh:
            cache.clear()
        reader = open_imageset(e.imageset, e.scan)

        def load():
            mask = cache.mask((master, 0), lambda: apply_rectangles(reader.get_mask(i)[0].copy(), p.mask or []))
            return panel_image(reader.get_raw_data(i)[0], mask, p.trusted_range)

        image = cache.get((master, i), load)
        png, info = render_view(image, view)
        return 1000 * (time.perf_counter() - t0), info, len(png)

    whole = View(max_width=canvas[0], max_height=canvas[1])
    n = min(8, e.scan.num_images)
    first = [view_ms(i, whole, True) for i in range(n)]          # a new image: read it and render it
    again = [view_ms(i, View(max_width=canvas[0], max_height=canvas[1], lo=0, hi=50, colour_map="heat"), False)
             for i in [n - 1] * 5]                                 # same image, new levels / colour map
    zoom = [view_ms(n - 1, View(x0=1200, y0=1300, x1=1750, y1=1800, max_width=canvas[0], max_height=canvas[1]),
                    False) for _ in range(5)]                      # zoomed in: native pixels
    out = {"image_size": list(p.image_size), "canvas": list(canvas), "n_images_timed": n,
           "whole_image_new_ms": {"median": statistics.median(x[0] for x in first),
                                  "max": max(x[0] for x in first)},
           "whole_image_binning": first[0][1]["binning"], "whole_image_png_bytes": first[0][2],
           "whole_image_render_only_ms": statistics.median(x[1]["ms"] for x in first),
           "same_image_new_levels_ms": statistics.median(x[0] for x in again),
           "zoomed_view_ms": statistics.median(x[0] for x in zoom)}
    proc = next((d for d in (folder, os.path.join(folder, "proc")) if os.path.isfile(os.path.join(d, "integrated.refl"))),
                None)
    if proc:
        from processing.io.expt import read_experiments
        from processing.io.refl import read_reflections

        t0 = time.perf_counter()
        ie, table = read_experiments(os.path.join(proc, "integrated.expt")), read_reflections(os.path.join(proc, "integrated.refl"))
        read_ms = 1000 * (time.perf_counter() - t0)
        times, sizes = [], []
        for image in range(1, n + 1):
            t0 = time.perf_counter()
            boxes, pred = ov.integrated(table, image - 1, 0)
            body = {"shoeboxes": boxes, "predicted": pred, "strong": ov.strong_spots(table, image - 1, 0),
                    "rings": ov.resolution_rings(ie[0], 0)}
            sizes.append(len(json.dumps(body)))
            times.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        scan = ov.scan_predictions(ie)
        t1 = time.perf_counter()
        ov.model_predictions(scan, 4, 0)
        out.update({"integrated_reflections": len(table), "read_integrated_files_ms": read_ms,
                    "overlay_ms": statistics.median(times), "overlay_json_bytes": int(statistics.median(sizes)),
                    "model_predictions_whole_scan_ms (once per run)": 1000 * (t1 - t0),
                    "model_predictions_one_image_ms (then)": 1000 * (time.perf_counter() - t1)})

    def rounded(v):
        return {k: rounded(x) for k, x in v.items()} if isinstance(v, dict) else (round(v, 1) if isinstance(v, float) else v)
    print(json.dumps(rounded(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
