"""Simulator speed: seconds per Eiger 2X 9M image and the insulin-24 size on disk.

Prints JSON. Renders a few sweeps of the insulin-24 preset (fewer images), times
each image (median), writes them through write_nxmx and scales the bytes per image
to the full 24 × 50 images.

    .venv/bin/python benchmarks/simulate_speed.py [n_sweeps] [n_images]
"""
import json
import os
import sys
import tempfile
import time

import numpy as np

from processing.simulate import SimulateParams, simulate
from processing.io.nxmx import write_nxmx


def main():
    n_sweeps = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    n_images = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    t0 = time.perf_counter()
    result = simulate(SimulateParams(preset="insulin-24", n_crystals=n_sweeps, n_images=n_images, seed=7))
    setup = time.perf_counter() - t0
    render_times, write_bytes, write_seconds = [], 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for k, s in enumerate(result.sweeps):
            gen = s.images()
            images = []
            for _ in range(n_images):
                t = time.perf_counter()
                images.append(next(gen))
                render_times.append(time.perf_counter() - t)
            e = s.experiment
            t = time.perf_counter()
            files = write_nxmx(os.path.join(tmp, f"bench_{k}_master.h5"), e.beam, e.detector,
                               e.goniometer, e.scan, iter(images), pixel_mask=result.pixel_mask,
                               saturation_value=int(result.params.saturation_value))
            write_seconds += time.perf_counter() - t
            write_bytes += sum(os.path.getsize(f) for f in files)
    n_total = len(render_times)
    full = 24 * 50
    print(json.dumps({
        "machine_cpus": os.cpu_count(),
        "image_size": result.summary["image_size"],
        "sweeps_rendered": n_sweeps, "images_per_sweep": n_images,
        "setup_seconds": round(setup, 2),
        "seconds_per_9m_image_render_median": round(float(np.median(render_times)), 4),
        "seconds_per_9m_image_render_first": round(render_times[0], 4),
        "seconds_per_9m_image_write": round(write_seconds / n_total, 4),
        "mb_per_9m_image_on_disk": round(write_bytes / n_total / 1e6, 3),
        "insulin24_images": full,
        "insulin24_estimated_gb_on_disk": round(write_bytes / n_total * full / 1e9, 2),
        "insulin24_estimated_minutes": round((np.median(render_times) + write_seconds / n_total) * full / 60
                                             + setup / n_sweeps * 24 / 60, 1),
        "reflections_per_sweep": [c["n_reflections"] for c in result.summary["crystals"]],
    }, indent=1))


if __name__ == "__main__":
    main()
