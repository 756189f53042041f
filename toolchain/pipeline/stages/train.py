"""Stage 5: the estimator (ResNet-18 trunk, one MLP head for the continuous parameters, one per discrete
parameter) trained on the paired dataset, and with ``train.with_renders`` on the build's renders beside it."""
from __future__ import annotations

from typing import Any

from ... import distributed
from ...data.paired_dataset import PairedDataset
from ...estimator.train import TrainConfig, matched_budget, preset, train
from ..baseline import renders_to_dataset
from ..config import BuildConfig
from ..runner import StageContext
from .progress import train_progress


def estimator_train_config(cfg: BuildConfig, epochs: int | None = None) -> TrainConfig:
    """The estimator's training config from a build's ``train`` section (``epochs`` overrides its own)."""
    c = cfg.train
    return preset(c.preset, epochs=epochs or c.epochs, batch_size=c.batch_size, input_size=c.input_size,
                  sharpen=c.sharpen, seed=c.seed)


def train_config(ctx: StageContext, epochs: int | None = None) -> TrainConfig:
    return estimator_train_config(ctx.cfg, epochs)


def finish(ctx: StageContext, summary: dict[str, Any], out_dir) -> dict[str, Any]:
    for w in summary.get("warnings", []):
        ctx.warn(w)
    return {"model": str((out_dir / "estimator.pt").resolve()), "epochs": summary["epochs_done"],
            "n_train": summary["n_train"], "n_val": summary["n_val"],
            "n_samples": summary["n_train"] + summary["n_val"], "val": summary.get("final", {}).get("val", {}),
            "backbone_pretrained": bool(summary.get("backbone", {}).get("pretrained")),
            "provenance": summary.get("provenance")}


def with_renders(tc: TrainConfig, n_pairs: int, n_renders: int) -> TrainConfig:
    """``tc`` for the pairs plus the renders: the epochs that show the samples the pairs alone would have shown, so
    adding the renders changes what is seen, not how much (nor the build's time)."""
    return matched_budget(tc, n_pairs + n_renders, n_pairs * tc.epochs)


def run(ctx: StageContext) -> dict[str, Any]:
    pairs = ctx.output("pairs")["dataset"]
    datasets, tc = [pairs], train_config(ctx)
    if ctx.cfg.train.with_renders:
        render = ctx.output("render")
        n_renders = distributed.on_main(renders_to_dataset, render["folder"], ctx.dir / "renders", render["n"],
                                        progress=lambda d, t: ctx.progress(d, t, "renders -> dataset"))
        datasets.append(ctx.dir / "renders")
        tc = with_renders(tc, len(PairedDataset.open(pairs)), n_renders)
    summary = train(datasets, ctx.dir, tc, backbone_weights=ctx.cfg.train.backbone_weights, device=ctx.cfg.device,
                    progress=train_progress(ctx))
    out = {**finish(ctx, summary, ctx.dir), "files": ["estimator.pt", "stats.jsonl", "run.json"]}
    if ctx.cfg.train.with_renders:
        out["with_renders"] = {"dataset": str((ctx.dir / "renders").resolve()), "n": n_renders}
    return out
