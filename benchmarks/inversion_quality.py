"""Inversion quality vs steps (perceptual / MSE curve) and glasses recovery for the three start codes
(``mean``: the paper's w_mean; ``present``: w̃_mean, a glasses code for renders with glasses;
``modified``: that plus a no-glasses code for renders without), on the trained tiny G_avatar and
alter renders.

    python benchmarks/inversion_quality.py [--n 96] [--steps 200]

Ground truth is the engine's own mask of each render. The reconstruction G_avatar(w*) is segmented by
G_avatar itself (argmax of its segmentation). Renders with glasses: recovered when the IoU of the two
glasses regions is at least ``--min-iou``. Renders without: a false positive when the reconstruction
has glasses pixels on more than ``--min-frac`` of the image (a pair of glasses covers ~2.6 % at 32 px).
Writes results/<name>.{json,md,png} and <name>_glasses.png (renders and their reconstructions per start
code; default name: inversion_quality).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import RESULTS, write_report  # noqa: E402

from toolchain.engines.alter import ALTER_SCHEMA  # noqa: E402
from toolchain.generators.io import load_generator  # noqa: E402
from toolchain.production.init_latent import InitConfig, build_init  # noqa: E402
from toolchain.production.inversion import InversionConfig, invert  # noqa: E402
from toolchain.production.pairs import load_target  # noqa: E402
from toolchain.torch_utils import uint8_to_signed as to_tensor  # noqa: E402
from toolchain.production.perceptual import make_perceptual  # noqa: E402
from toolchain.render import RenderFolder, image_path, mask_path  # noqa: E402
from toolchain.generators.config import ENGINE_LABELS  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


@torch.no_grad()
def glasses_masks(g, w: torch.Tensor) -> np.ndarray:
    k = g.cfg.part_index("glasses")
    return torch.cat([(g.synthesize(c, "const").seg.argmax(1) == k) for c in w.split(64)]).numpy()


def render_glasses_mask(rdir: Path, index: int, size: int) -> np.ndarray:
    with Image.open(mask_path(rdir, index)) as mask:
        return np.asarray(mask.resize((size, size), Image.NEAREST)) == ENGINE_LABELS.index("glasses")


def glasses_scores(pred: np.ndarray, truth: np.ndarray, has: np.ndarray, min_iou: float, min_frac: float) -> dict:
    inter = (pred & truth).sum((1, 2))
    union = (pred | truth).sum((1, 2))
    iou = inter / np.maximum(union, 1)
    area = pred.mean((1, 2))
    return {"recovery": float((iou[has] >= min_iou).mean()), "mean_iou": float(iou[has].mean()),
            "false_positive": float((area[~has] > min_frac).mean()), "area_without": float(area[~has].mean())}


@torch.no_grad()
def glasses_picture(g, y: torch.Tensor, codes: dict[str, torch.Tensor], has: np.ndarray, path: Path, n: int = 6) -> None:
    """Columns: renders with glasses, then without; rows: the render, then each start code's reconstruction."""
    with_g, without = list(np.flatnonzero(has)[:n]), list(np.flatnonzero(~has)[:n])
    cols = with_g + without
    rows = [y[cols]] + [g.synthesize(w[cols], "const").image for w in codes.values()]
    tiles = torch.stack(rows).clamp(-1, 1).add(1).mul(127.5).round().byte()   # [R, C, 3, S, S]
    r, c, _, s, _ = tiles.shape
    sheet = tiles.permute(0, 3, 1, 4, 2).reshape(r * s, c * s, 3).numpy()
    img = Image.fromarray(sheet).resize((c * s * 3, r * s * 3), Image.NEAREST)
    canvas = Image.new("RGB", (img.width + 90, img.height + 16), "white")
    canvas.paste(img, (90, 16))
    draw = ImageDraw.Draw(canvas)
    draw.text((90, 2), f"{len(with_g)} renders with glasses | {len(without)} without", fill="black")
    for i, name in enumerate(["render"] + [f"init {m}" for m in codes]):
        draw.text((4, 16 + i * s * 3 + s), name, fill="black")
    canvas.save(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-frac", type=float, default=0.01)
    ap.add_argument("--min-iou", type=float, default=0.3)
    ap.add_argument("--name", default="inversion_quality", help="Report name under results/.")
    ap.add_argument("--generator", default=str(ROOT / "runs/gan/ft2-color/generator.safetensors"))
    ap.add_argument("--renders", default=str(ROOT / "runs/gan/renders-alter-64"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g, _ = load_generator(a.generator)
    g.requires_grad_(False)
    rdir = Path(a.renders)
    rows = [{"index": i, "vector": v} for i, v in enumerate(RenderFolder.open(rdir).vectors)]
    absent = ALTER_SCHEMA.param("glasses").absent_index
    # balanced: half with glasses, half without, in render order
    with_g = [r for r in rows if r["vector"]["glasses"] != absent][: a.n // 2]
    without = [r for r in rows if r["vector"]["glasses"] == absent][: a.n - len(with_g)]
    picks = with_g + without
    has = np.array([r["vector"]["glasses"] != absent for r in picks])
    y = to_tensor(np.stack([load_target(image_path(rdir, r["index"]), g.cfg.size) for r in picks]))
    truth = np.stack([render_glasses_mask(rdir, r["index"], g.cfg.size) for r in picks])
    perceptual, info = make_perceptual(None)
    cfg = InversionConfig(steps=a.steps, early_stop_tol=0, batch_size=len(picks))  # full curve: no early stop
    out: dict = {"n": len(picks), "with_glasses": int(has.sum()), "steps": a.steps, "perceptual": info,
                 "min_frac": a.min_frac, "min_iou": a.min_iou, "generator": a.generator, "runs": {}}
    codes: dict[str, torch.Tensor] = {}
    for mode in ("mean", "present", "modified"):
        init = build_init(g, ALTER_SCHEMA, InitConfig(mode=mode))
        w0 = init.for_vectors([r["vector"] for r in picks])
        res = invert(g, perceptual, y, w0, cfg, record_history=True)
        codes[mode] = res.wplus
        out["runs"][mode] = {
            "init": init.to_json(), "history": res.history,
            "final": {"loss": float(res.loss.mean()), "perceptual": float(res.perceptual.mean()), "mse": float(res.mse.mean())},
            "at_start": glasses_scores(glasses_masks(g, w0), truth, has, a.min_iou, a.min_frac),
            "inverted": glasses_scores(glasses_masks(g, res.wplus), truth, has, a.min_iou, a.min_frac)}
        print(mode, out["runs"][mode]["final"], out["runs"][mode]["inverted"], flush=True)
    glasses_picture(g, y, codes, has, RESULTS / f"{a.name}_glasses.png")
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
    fig.savefig(RESULTS / f"{a.name}.png", dpi=100)
    marks = [s for s in (0, 1, 10, 25, 50, 100, 150, a.steps) if s <= a.steps]
    table = []
    for mode, r in out["runs"].items():
        h = r["history"]
        for s in marks:
            table.append([mode, s, f"{h['perceptual'][s]:.4f}", f"{h['mse'][s]:.4f}", f"{h['loss'][s]:.4f}"])
    notes = "\n".join(
        f"- init {m}: glasses recovered (IoU >= {a.min_iou}) in {r['inverted']['recovery']:.0%} of {int(has.sum())} renders "
        f"with glasses (mean IoU {r['inverted']['mean_iou']:.2f}); false glasses in {r['inverted']['false_positive']:.0%} "
        f"of {int((~has).sum())} without (mean area {r['inverted']['area_without']:.2%}). At the start code: "
        f"{r['at_start']['recovery']:.0%} / {r['at_start']['false_positive']:.0%}."
        for m, r in out["runs"].items())
    _, mp = write_report(a.name, out, ["init", "after step", "perceptual", "mse", "loss"], table,
                         notes=f"Values are means over the {len(picks)} images after that many Adam steps (0: at the start "
                               f"code); G_avatar {a.generator}.\n\n" + notes)
    print(mp.read_text())


if __name__ == "__main__":
    main()
