"""Stage 7: evaluate the estimator (and the Baseline, when built) on the held-out set: per-parameter
accuracy / MAE, render-space distance, where the discrete answers go (confusion matrices) and the picture grid
(input | predicted avatar | ground truth)."""
from __future__ import annotations

from typing import Any

from ...evaluation.confusion import save_confusion_png
from ...evaluation.evaluate import evaluate
from ..runner import StageContext


def run(ctx: StageContext) -> dict[str, Any]:
    heldout = ctx.output("heldout")
    models = {"swiftavatar": ctx.output("train")["model"]}
    if "baseline" in ctx.upstream:
        models["baseline"] = ctx.output("baseline")["model"]
    out: dict[str, Any] = {"set": heldout, "models": {}}
    for name, model in models.items():
        report = evaluate(model, heldout["set"], ctx.dir / name, lpips_weights=ctx.cfg.eval.lpips_weights,
                          engine=ctx.cfg.engine, device="cpu",
                          progress=lambda d, t, name=name: ctx.progress(d, t, f"evaluate {name}"))
        out["models"][name] = {"metrics": report["metrics"], "dir": str((ctx.dir / name).resolve()),
                               "confusion": report.get("confusion")}
        if not report["metrics"]["render_distance"]["lpips"].get("available", "mean" in report["metrics"]["render_distance"]["lpips"]):
            ctx.warn("LPIPS not computed (no eval.lpips_weights): render distance is the weight-free masked pixel L1")
    out["files"] = [f"{name}/eval.json" for name in models] + [f"{name}/grid.png" for name in models]
    confs = {name: m["confusion"] for name, m in out["models"].items() if m.get("confusion")}
    if confs:   # both estimators' answers side by side, for the report
        save_confusion_png(confs, ctx.dir / "confusion.png")
        out["files"].append("confusion.png")
    return out
