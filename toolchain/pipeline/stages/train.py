"""Stage 5: the estimator (ResNet-18 trunk, one MLP head for the continuous parameters, one per discrete
parameter) trained on the paired dataset."""
from __future__ import annotations

from typing import Any

from ...estimator.train import TrainConfig, preset, train
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


def run(ctx: StageContext) -> dict[str, Any]:
    summary = train([ctx.output("pairs")["dataset"]], ctx.dir, train_config(ctx),
                    backbone_weights=ctx.cfg.train.backbone_weights, device=ctx.cfg.device,
                    progress=train_progress(ctx))
    return {**finish(ctx, summary, ctx.dir), "files": ["estimator.pt", "stats.jsonl", "run.json"]}
