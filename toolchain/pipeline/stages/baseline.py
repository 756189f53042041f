"""The paper's Baseline beside the method: the same estimator trained on the renders themselves for the same
number of samples seen (unless ``baseline.epochs`` says otherwise), so the report can show what the domain
bridging buys."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ... import distributed
from ...estimator.train import matched_budget, train
from ..baseline import renders_to_dataset
from ..runner import StageContext
from .progress import train_progress
from .train import finish, train_config


def run(ctx: StageContext) -> dict[str, Any]:
    render = ctx.output("render")
    shared = ctx.output("train").get("with_renders")   # the estimator's stage already wrote these renders as a dataset
    dataset = Path(shared["dataset"]) if shared else ctx.dir / "dataset"
    n = shared["n"] if shared else distributed.on_main(renders_to_dataset, render["folder"], dataset, render["n"],
                                                       progress=lambda d, t: ctx.progress(d, t, "renders -> dataset"))
    if ctx.cfg.baseline.epochs:
        tc = train_config(ctx, ctx.cfg.baseline.epochs)
    else:
        method = ctx.output("train")   # its own epochs: with train.with_renders they are not the config's
        tc = matched_budget(train_config(ctx), n, method["n_samples"] * method["epochs"])
    summary = train([dataset], ctx.dir / "train", tc,
                    backbone_weights=ctx.cfg.train.backbone_weights, device=ctx.cfg.device,
                    progress=train_progress(ctx, "baseline"))
    return {**finish(ctx, summary, ctx.dir / "train"), "files": ["train/estimator.pt", "train/stats.jsonl"]}
