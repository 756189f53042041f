"""Render throughput of the build's engine at its render size, 1 and 2 worker processes, through the same
code path as ``avatartool render`` (PNG encoding and atomic writes included, worker start-up included)."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from toolchain.render.job import RenderConfig, render_folder

from .common import BuildRun, Table


def run(build: BuildRun, quick: bool) -> Table:
    r = build.cfg.render
    n = 24 if quick else 512
    rows, runs = [], []
    for workers in (1, 2):
        out = Path(tempfile.mkdtemp(prefix="bench-render-"))
        try:
            t0 = time.perf_counter()
            render_folder(RenderConfig(engine=build.cfg.engine, n=n, seed=r.seed + 77, size=r.size, workers=workers,
                                       batch_size=r.batch_size, timeout_s=r.engine_timeout), out)
            seconds = time.perf_counter() - t0
        finally:
            shutil.rmtree(out, ignore_errors=True)
        runs.append({"workers": workers, "n": n, "size": r.size, "seconds": seconds, "images_per_s": n / seconds})
        rows.append([workers, r.size, n, f"{seconds:.2f}", f"{n / seconds:.1f}"])
    return Table("render", {"runs": runs}, ["workers", "px", "images", "seconds", "images/s"], rows,
                 notes=f"Engine {build.cfg.engine}; worker start-up, PNG encoding (image + mask) and atomic writes included.")
