"""Generator training speed at the build's G_real configuration, on the build's own training photos."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from toolchain.generators.config import generator_preset
from toolchain.generators.mask_folder import load_mask_folder
from toolchain.generators.train_real import run_gan, train_preset

from .common import BuildRun, Table


def run(build: BuildRun, quick: bool) -> Table:
    c = build.cfg.real
    gcfg = generator_preset(c.generator_config)
    steps = 5 if quick else 33
    tcfg = train_preset(c.train_preset, iters=steps, batch_size=c.batch_size, log_every=1, sample_every=10 ** 9,
                        snapshot_every=10 ** 9)
    photos = build.output("real_generator").get("photos")
    if photos:
        images, masks = load_mask_folder(photos, gcfg, limit=max(64, tcfg.batch_size))
        source = f"{len(images)} of the build's training photos"
    else:   # G_real came from a file: time on random data of the same shape
        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (16, gcfg.size, gcfg.size, 3), dtype=np.uint8)
        masks = rng.integers(0, gcfg.n_parts, (16, gcfg.size, gcfg.size)).astype(np.int64)
        source = "random images (the build's G_real came from a file)"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_gan(tmp, tmp, gcfg, tcfg, images=images, masks=masks, device=build.cfg.device)
        wall = time.perf_counter() - t0
        stats = [json.loads(line) for line in (Path(tmp) / "stats.jsonl").read_text().splitlines()]
    sec = [1 / s["it_per_s"] for s in stats]
    steady = [s for k, s in enumerate(sec) if k > 0]    # step 0 carries allocation and kernel selection
    it_s = 1 / float(np.mean(steady)) if steady else 1 / sec[0]
    data = {"config": c.generator_config, "size": gcfg.size, "batch": tcfg.batch_size, "steps": steps,
            "threads": torch.get_num_threads(), "step_seconds": sec, "it_per_s": it_s, "wall_s": wall, "data": source}
    rows = [[c.generator_config, gcfg.size, gcfg.n_parts, tcfg.batch_size, steps, f"{it_s:.3f}",
             f"{it_s * tcfg.batch_size:.1f}", f"{sec[0]:.2f}"]]
    return Table("gan", data, ["config", "px", "parts", "batch", "steps", "it/s (after step 0)", "img/s", "step 0 s"],
                 rows, notes=f"Full training steps (D, G + mask loss, lazy R1 every 16, path length every 4, EMA) on {source}; "
                             f"{torch.get_num_threads()} torch threads.")
