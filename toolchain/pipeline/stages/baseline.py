"""The paper's Baseline beside the method: the same estimator and budget trained on the renders themselves,
so the report can show what the domain bridging buys."""
from __future__ import annotations

from typing import Any

from ...estimator.train import train
from ..baseline import renders_to_dataset
from ..runner import StageContext
from .progress import train_progress
from .train import finish, train_config


def run(ctx: StageContext) -> dict[str, Any]:
    render = ctx.output("render")
    renders_to_dataset(render["folder"], ctx.dir / "dataset", render["n"],
                       progress=lambda d, t: ctx.progress(d, t, "renders -> dataset"))
    summary = train([ctx.dir / "dataset"], ctx.dir / "train", train_config(ctx, ctx.cfg.baseline.epochs),
                    backbone_weights=ctx.cfg.train.backbone_weights, device=ctx.cfg.device,
                    progress=train_progress(ctx, "baseline"))
    return {**finish(ctx, summary, ctx.dir / "train"), "files": ["train/estimator.pt", "train/stats.jsonl"]}
