"""Inversion throughput: batched (one batch of N) vs one image at a time, in the same run.

    python benchmarks/inversion_throughput.py [--n 64] [--steps 20] [--threads 1,2] [--repeats 3]

Uses the trained tiny G_avatar (runs/gan/ft2-color) when present, else a random tiny generator; targets
are renders from runs/gan/renders-alter-64 (or generator samples). Early stop is off so both modes do
the same number of steps. Measured at each thread count: one image at a time is bound by per-operation
overhead and gains nothing from more cores, the batch is bound by arithmetic and does, so the ratio
grows with the core count. Writes results/inversion_throughput.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import write_report  # noqa: E402

from toolchain.generators.config import generator_preset  # noqa: E402
from toolchain.generators.generator import SemanticGenerator  # noqa: E402
from toolchain.generators.io import load_generator  # noqa: E402
from toolchain.production.inversion import InversionConfig, invert  # noqa: E402
from toolchain.production.pairs import load_target  # noqa: E402
from toolchain.torch_utils import uint8_to_signed as to_tensor  # noqa: E402
from toolchain.production.perceptual import make_perceptual  # noqa: E402
from toolchain.render import image_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                    help="Comma-separated torch thread counts to measure at (default 1,2).")
    ap.add_argument("--repeats", type=int, default=3, help="Trials per thread count (median reported).")
    ap.add_argument("--generator", default=str(ROOT / "runs/gan/ft2-color/generator.safetensors"))
    ap.add_argument("--renders", default=str(ROOT / "runs/gan/renders-alter-64"))
    a = ap.parse_args()
    if Path(a.generator).is_file():
        g, _ = load_generator(a.generator)
        gname = a.generator
    else:
        torch.manual_seed(0)
        g, gname = SemanticGenerator(generator_preset("tiny")).eval(), "random tiny"
    g.requires_grad_(False)
    s = g.cfg.size
    rdir = Path(a.renders)
    if (rdir / "images").is_dir():
        y = to_tensor(np.stack([load_target(image_path(rdir, i), s) for i in range(a.n)]))
    else:
        with torch.no_grad():
            y = g.sample(torch.randn(a.n, g.cfg.style_dim), noise_mode="const").image
    perceptual, info = make_perceptual(None)
    w0 = g.mean_latent(10_000)[None, None].repeat(a.n, g.cfg.n_latent, 1)
    cfg = InversionConfig(steps=a.steps, early_stop_tol=0, batch_size=a.n)
    one = replace(cfg, batch_size=1)
    data = {"generator": gname, "n": a.n, "steps": a.steps, "perceptual": info, "runs": []}
    rows = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        invert(g, perceptual, y[:2], w0[:2], replace(cfg, steps=2))  # warm-up
        invert(g, perceptual, y[:1], w0[:1], replace(one, steps=2))
        trials = []
        for _ in range(a.repeats):  # alternating pairs: slow phases of a shared machine hit both modes
            t = time.perf_counter()
            batched = invert(g, perceptual, y, w0, cfg)
            t_batched = time.perf_counter() - t
            t = time.perf_counter()
            single = [invert(g, perceptual, y[i:i + 1], w0[i:i + 1], one) for i in range(a.n)]
            t_single = time.perf_counter() - t
            trials.append({"batched_images_per_s": a.n / t_batched, "single_images_per_s": a.n / t_single,
                           "speedup": t_single / t_batched})
            print(threads, trials[-1], flush=True)
        max_diff = max(float((o.wplus[0] - batched.wplus[i]).abs().max()) for i, o in enumerate(single))
        med = sorted(trials, key=lambda r: r["speedup"])[len(trials) // 2]
        speedups = [r["speedup"] for r in trials]
        data["runs"].append({"threads": threads, "trials": trials, "median": med,
                             "max_abs_w_diff_batched_vs_single": max_diff})
        rng = f"{med['speedup']:.1f}x ({min(speedups):.1f}-{max(speedups):.1f})"
        rows += [[threads, f"batched ({a.n} slots)", f"{med['batched_images_per_s']:.2f}", rng],
                 [threads, "one at a time", f"{med['single_images_per_s']:.2f}", "1.0x"]]
    # one image at a time is often fastest on fewer threads (tiny ops pay for thread sync), so also compare
    # each mode at its own best thread count
    best_b = max(data["runs"], key=lambda r: r["median"]["batched_images_per_s"])
    best_s = max(data["runs"], key=lambda r: r["median"]["single_images_per_s"])
    data["best_vs_best"] = {"batched_threads": best_b["threads"], "single_threads": best_s["threads"],
                            "speedup": best_b["median"]["batched_images_per_s"] / best_s["median"]["single_images_per_s"]}
    rows.append(["best of each", f"batched at {best_b['threads']} vs one at a time at {best_s['threads']}", "",
                 f"{data['best_vs_best']['speedup']:.1f}x"])
    diffs = ", ".join(f"{r['max_abs_w_diff_batched_vs_single']:.1e}" for r in data["runs"])
    jp, mp = write_report("inversion_throughput", data, ["threads", "mode", "images/s", "speed-up (range)"],
                          rows, notes=f"{a.n} images, {a.steps} Adam steps each, early stop off, generator {gname}. "
                                      f"Each thread count: {a.repeats} trials, each timing both modes back to back; the "
                                      "row is the median trial, the range spans all trials. max |w_batched - w_single| "
                                      f"per thread count: {diffs} (a batch of 64 and a batch of 1 run different kernels; "
                                      "results are bit-identical only at equal slot counts).")
    print(mp.read_text())


if __name__ == "__main__":
    main()
