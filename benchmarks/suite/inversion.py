"""Inversion on the build's G_avatar and renders: images/s with the build's slot count against one image
at a time (same run, alternating), and the loss against steps (a plot)."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from toolchain.generators.io import load_generator
from toolchain.production.inversion import InversionConfig, invert, inversion_precision
from toolchain.production.render_pixels import load_target
from toolchain.production.perceptual import make_perceptual
from toolchain.render.folder import RenderFolder
from toolchain.torch_utils import uint8_to_signed

from .common import BuildRun, Table


def run(build: BuildRun, quick: bool) -> Table:
    import warnings
    g, _ = load_generator(build.output("avatar_generator")["generator"])
    g.requires_grad_(False)
    folder = RenderFolder.open(build.output("render")["folder"])
    slots = build.cfg.pairs.batch
    n = min(8 if quick else slots, len(folder.vectors))
    steps = 3 if quick else 20
    y = uint8_to_signed(np.stack([load_target(folder.image_path(i), g.cfg.size) for i in range(n)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        perceptual, info = make_perceptual(build.cfg.pairs.lpips_weights)
    w0 = g.mean_latent(2000)[None, None].repeat(n, g.cfg.n_latent, 1)
    cfg = InversionConfig(steps=steps, batch_size=n, precision=inversion_precision(build.cfg.pairs.precision))
    one = replace(cfg, batch_size=1)
    invert(g, perceptual, y[:2], w0[:2], replace(cfg, steps=1, batch_size=2))   # warm-up
    trials = []
    for _ in range(1 if quick else 3):    # alternating: a slow phase of a shared machine hits both modes
        t = time.perf_counter()
        w_batched = invert(g, perceptual, y, w0, cfg).wplus
        t_batched = time.perf_counter() - t
        t = time.perf_counter()
        w_single = torch.cat([invert(g, perceptual, y[i:i + 1], w0[i:i + 1], one).wplus for i in range(n)])
        t_single = time.perf_counter() - t
        trials.append({"batched_images_per_s": n / t_batched, "single_images_per_s": n / t_single,
                       "speedup": t_single / t_batched})
    med = sorted(trials, key=lambda t: t["speedup"])[len(trials) // 2]
    # the same samples through another slot count take another floating-point path: how far the codes move
    batch_delta = float((w_batched - w_single).abs().max())
    curve_steps = 10 if quick else build.cfg.pairs.steps
    res = invert(g, perceptual, y, w0, replace(cfg, steps=curve_steps), record_history=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("loss", "perceptual", "mse"):
        ax.plot(range(1, len(res.history[key]) + 1), res.history[key], label=key)
    ax.set(xlabel="step", ylabel="mean over images", title=f"inversion loss vs steps ({n} renders)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    data = {"n": n, "steps": steps, "slots": n, "precision": cfg.precision, "perceptual": info,
            "threads": torch.get_num_threads(), "trials": trials,
            "curve": res.history, "final_loss_mean": float(res.loss.mean()),
            "max_abs_w_difference_batched_vs_single": batch_delta}
    rows = [[f"batched ({n} slots)", f"{med['batched_images_per_s']:.2f}", f"{med['speedup']:.1f}x"],
            ["one at a time", f"{med['single_images_per_s']:.2f}", "1.0x"]]
    loss_rows = [["loss after step", *(str(s) for s in (1, curve_steps // 4, curve_steps // 2, curve_steps))],
                 ["mean loss", *(f"{res.history['loss'][max(0, s - 1)]:.4f}"
                                 for s in (1, curve_steps // 4, curve_steps // 2, curve_steps))]]
    notes = (f"{n} renders, {steps} Adam steps each, early stop off, {torch.get_num_threads()} threads, generator pass in "
             f"{cfg.precision}, perceptual "
             f"term {'LPIPS' if info['used'] else info.get('fallback')}; median of {len(trials)} alternating trials. "
             "Loss curve: " + "; ".join(" | ".join(r) for r in loss_rows) + ". "
             f"Batch-size sensitivity: the same {n} renders inverted with {n} slots and with 1 end "
             f"up to {batch_delta:.1e} apart in w (max |Δ| over all codes).")
    return Table("inversion", data, ["mode", "images/s", "speed-up"], rows, notes=notes, plots={"inversion_curve": fig})
