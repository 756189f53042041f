"""Generator training speed at the build's G_real configuration, on the build's own training photos."""
from __future__ import annotations

import json
from dataclasses import replace
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from toolchain.generators.config import generator_preset
from toolchain.generators.mask_folder import load_mask_folder
from toolchain.generators.train_real import run_gan, train_preset
from toolchain.precision import cpu_has_native_bf16, resolve_precision
from toolchain.torch_utils import select_device

from .common import BuildRun, Table


# The tiny recipes, timed one after the other in one run: the official regularisers at full strength (the
# smoke and cpu builds' recipe), the small-data recipe (weak R1, no path length or mixing, DiffAugment) and the
# official one with the reconstruction aid (an encoder and a second generator pass per step).
RECIPES = {"tiny_official": "official regularisers, no augmentation", "tiny": "small-data recipe (DiffAugment)",
           "tiny_recon": "official + reconstruction aid (encoder)"}
RECIPE_FIELDS = ("path_weight", "mixing", "r1_img", "r1_seg", "augment", "ema_rampup", "recon_weight", "recon_kl")


def _time(gcfg, tcfg, images, masks, device, sections: dict[str, float] | None = None
          ) -> tuple[list[float], float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_gan(tmp, tmp, gcfg, tcfg, images=images, masks=masks, device=device, section_seconds=sections)
        wall = time.perf_counter() - t0
        stats = [json.loads(line) for line in (Path(tmp) / "stats.jsonl").read_text().splitlines()]
    sec = [1 / s["it_per_s"] for s in stats]
    steady = [s for k, s in enumerate(sec) if k > 0]    # step 0 carries allocation and kernel selection
    return sec, 1 / float(np.mean(steady)) if steady else 1 / sec[0], wall


def run(build: BuildRun, quick: bool) -> Table:
    c = build.cfg.real
    gcfg = generator_preset(c.generator_config)
    steps = 5 if quick else 33
    tcfg = train_preset(c.train_preset, iters=steps, batch_size=c.batch_size, log_every=1, sample_every=10 ** 9,
                        snapshot_every=10 ** 9, precision=resolve_precision(c.precision, select_device(build.cfg.device)))
    photos = build.output("real_generator").get("photos")
    if photos:
        images, masks = load_mask_folder(photos, gcfg, limit=max(64, tcfg.batch_size))
        source = f"{len(images)} of the build's training photos"
    else:   # G_real came from a file: time on random data of the same shape
        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (16, gcfg.size, gcfg.size, 3), dtype=np.uint8)
        masks = rng.integers(0, gcfg.n_parts, (16, gcfg.size, gcfg.size)).astype(np.int64)
        source = "random images (the build's G_real came from a file)"
    rows, data = [], {"config": c.generator_config, "size": gcfg.size, "steps": steps,
                      "threads": torch.get_num_threads(), "data": source, "recipes": {}}
    recipes = [(f"build's recipe ({c.train_preset})", tcfg)]
    for name, what in RECIPES.items():
        if name != c.train_preset:
            other = train_preset(name)
            recipes.insert(0, (f"{name}: {what}", replace(tcfg, **{k: getattr(other, k) for k in RECIPE_FIELDS})))
    # the other arithmetic too, where this machine has a bf16 path worth timing (CUDA, AMX / AVX512-BF16)
    if resolve_precision("auto", select_device(build.cfg.device)) == "bf16":
        other = "fp32" if tcfg.precision == "bf16" else "bf16"
        recipes.insert(len(recipes) - 1, (f"build's recipe ({c.train_preset}), {other}", replace(tcfg, precision=other)))
    sections: dict[str, float] = {}
    for label, t in recipes:
        # the build's recipe (last) is also split into the parts of its steps
        sec, it_s, wall = _time(gcfg, t, images, masks, build.cfg.device, sections if t is tcfg else None)
        data["recipes"][label] = {"train": t.to_json(), "step_seconds": sec, "it_per_s": it_s, "wall_s": wall}
        rows.append([label, t.precision, c.generator_config, gcfg.size, gcfg.n_parts, t.batch_size, steps, f"{it_s:.3f}",
                     f"{it_s * t.batch_size:.1f}", f"{sec[0]:.2f}"])
    after = data["recipes"][rows[-1][0]]
    data.update(batch=tcfg.batch_size, it_per_s=after["it_per_s"], step_seconds=after["step_seconds"],
                step_sections_s=sections)
    return Table("gan", data, ["recipe", "arithmetic", "config", "px", "parts", "batch", "steps", "it/s (after step 0)", "img/s",
                               "step 0 s"], rows,
                 notes=f"Full training steps on {source}; {torch.get_num_threads()} torch threads, one recipe after the "
                       f"other in one run; arithmetic: the build's `real.precision` ({c.precision}) as it resolves here "
                       f"(bf16 autocast on CUDA and on CPUs with native bf16: {'yes' if cpu_has_native_bf16() else 'no'} "
                       "on this one), and the build's recipe in the other one where this machine has a bf16 path. "
                       + "; ".join(
                           f"{name}: " + ", ".join(f"{k} {getattr(train_preset(name), k)!r}" for k in RECIPE_FIELDS)
                           for name in RECIPES) + f". Build's recipe: {tcfg.to_json()}.\n\n"
                       + _sections_markdown(sections, steps, tcfg))


def _sections_markdown(sections: dict[str, float], steps: int, tcfg) -> str:
    """Where the build's recipe spends a step: wall time per part, averaged over every step (step 0 too)."""
    total = sum(sections.values())
    lines = [f"Where the build's recipe spends a step (wall time per part over all {steps} steps, step 0 included; "
             f"R1 runs every {tcfg.d_reg_every} steps, path length every {tcfg.g_reg_every}, so theirs is an "
             "average):", "", "| part of the step | ms per step | share |", "|---|---|---|"]
    for name, sec in sorted(sections.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {1000 * sec / steps:.1f} | {sec / total:.0%} |")
    return "\n".join(lines)
