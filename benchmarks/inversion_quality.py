"""Inversion quality vs steps (perceptual / MSE curve) and glasses recovery with and without the
modified initialisation w̃_mean, on the trained tiny G_avatar and alter renders.

    python benchmarks/inversion_quality.py [--n 48] [--steps 200]

Glasses recovery: the reconstruction G_avatar(w*) is segmented by G_avatar itself (argmax of its
segmentation); "glasses present" = glasses pixels above ``--min-frac`` of the image (renders with
glasses cover ~2.7 % at 32 px). Recovery = share of renders with glasses whose reconstruction shows
them; false positives = share of renders without glasses whose reconstruction shows some.
Writes results/inversion_quality.{json,md} and results/inversion_quality.png.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import RESULTS, write_report  # noqa: E402

from toolchain.atomic_io import read_jsonl  # noqa: E402
from toolchain.engines.alter import ALTER_SCHEMA  # noqa: E402
from toolchain.generators.io import load_generator  # noqa: E402
from toolchain.production.init_latent import InitConfig, build_init  # noqa: E402
from toolchain.production.inversion import InversionConfig, invert  # noqa: E402
from toolchain.production.pairs import load_target, to_tensor  # noqa: E402
from toolchain.production.perceptual import make_perceptual  # noqa: E402


@torch.no_grad()
def glasses_shown(g, w: torch.Tensor, min_frac: float) -> np.ndarray:
    k = g.cfg.part_index("glasses")
    frac = (g.synthesize(w, "const").seg.argmax(1) == k).float().mean((1, 2))
    return (frac > min_frac).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-frac", type=float, default=0.01)
    ap.add_argument("--generator", default=str(ROOT / "runs/gan/ft2-color/generator.safetensors"))
    ap.add_argument("--renders", default=str(ROOT / "runs/gan/renders-alter-64"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g, _ = load_generator(a.generator)
    g.requires_grad_(False)
    rdir = Path(a.renders)
    rows = read_jsonl(rdir / "vectors.jsonl")
    absent = ALTER_SCHEMA.param("glasses").absent_index
    # balanced: half with glasses, half without, in render order
    with_g = [r for r in rows if r["vector"]["glasses"] != absent][: a.n // 2]
    without = [r for r in rows if r["vector"]["glasses"] == absent][: a.n - len(with_g)]
    picks = with_g + without
    has = np.array([r["vector"]["glasses"] != absent for r in picks])
    y = to_tensor(np.stack([load_target(rdir / "images" / f"{r['index']:06d}.png", g.cfg.size) for r in picks]))
    perceptual, info = make_perceptual(None)
    cfg = InversionConfig(steps=a.steps, early_stop_tol=0, batch_size=len(picks))  # full curve: no early stop
    out: dict = {"n": len(picks), "with_glasses": int(has.sum()), "steps": a.steps, "perceptual": info,
                 "min_frac": a.min_frac, "runs": {}}
    for mode in ("mean", "modified"):
        init = build_init(g, ALTER_SCHEMA, InitConfig(mode=mode))
        w0 = init.for_vectors([r["vector"] for r in picks])
        at_init = glasses_shown(g, w0, a.min_frac)
        res = invert(g, perceptual, y, w0, cfg, record_history=True)
        shown = glasses_shown(g, res.wplus, a.min_frac)
        out["runs"][mode] = {
            "init": init.to_json(), "history": res.history,
            "final": {"loss": float(res.loss.mean()), "perceptual": float(res.perceptual.mean()), "mse": float(res.mse.mean())},
            "recovery": float(shown[has].mean()), "false_positive": float(shown[~has].mean()),
            "shown_at_init_with": float(at_init[has].mean()), "shown_at_init_without": float(at_init[~has].mean())}
        print(mode, out["runs"][mode]["final"], "recovery", out["runs"][mode]["recovery"],
              "fp", out["runs"][mode]["false_positive"], flush=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, r in out["runs"].items():
        axes[0].plot(r["history"]["perceptual"], label=f"init {mode}")  # index = Adam steps taken
        axes[1].plot(r["history"]["mse"], label=f"init {mode}")
    axes[0].set_title(f"perceptual ({'LPIPS' if info['used'] else info['fallback']})")
    axes[1].set_title("MSE (images in [-1, 1])")
    for ax in axes:
        ax.set_xlabel("step"), ax.set_yscale("log"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "inversion_quality.png", dpi=100)
    marks = [s for s in (0, 1, 10, 25, 50, 100, 150, a.steps) if s <= a.steps]
    table = []
    for mode, r in out["runs"].items():
        h = r["history"]
        for s in marks:
            table.append([mode, s, f"{h['perceptual'][s]:.4f}", f"{h['mse'][s]:.4f}", f"{h['loss'][s]:.4f}"])
    notes = "\n".join(f"- init {m}: glasses recovery {r['recovery']:.0%} of {int(has.sum())} renders with glasses, "
                      f"false positives {r['false_positive']:.0%} of {int((~has).sum())} without "
                      f"(shown at init: {r['shown_at_init_with']:.0%} / {r['shown_at_init_without']:.0%})"
                      for m, r in out["runs"].items())
    _, mp = write_report("inversion_quality", out, ["init", "after step", "perceptual", "mse", "loss"], table,
                         notes=f"Values are means over the {len(picks)} images after that many Adam steps (0: at the start "
                               f"code); G_avatar {a.generator}.\n\n" + notes)
    print(mp.read_text())


if __name__ == "__main__":
    main()
