"""Accuracy of the build's estimator and Baseline on its held-out set, evaluated afresh (not read from the
build's own eval.json): per-parameter accuracy / MAE (in each parameter's units and as a share of its range),
the render distance, and where each estimator's discrete answers go (confusion matrices)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from toolchain.evaluation.confusion import confusion_figure, shift_sentence
from toolchain.evaluation.evaluate import evaluate

from .common import BuildRun, Table


def run(build: BuildRun, quick: bool) -> Table:
    held = build.output("heldout")
    models = {"SwiftAvatar": build.output("train")["model"]}
    if build.has("baseline"):
        models["Baseline"] = build.output("baseline")["model"]
    metrics, confs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            report = evaluate(model, held["set"], Path(tmp) / name, lpips_weights=build.cfg.eval.lpips_weights,
                              engine=build.cfg.engine)
            metrics[name] = report["metrics"]
            if report.get("confusion"):
                confs[name] = report["confusion"]
    names = list(metrics)
    first = metrics[names[0]]
    rows = [[p, "accuracy", *(f"{metrics[n]['accuracy'][p]:.3f}" for n in names)] for p in first["accuracy"]]
    for p in first["mae"]:   # in the parameter's units, and as a share of its range (comparable across parameters)
        rows.append([p, "MAE (its units)", *(f"{metrics[n]['mae'][p]:.4f}" for n in names)])
        rows.append([p, "MAE / range", *(f"{metrics[n]['normalised_mae'][p]:.4f}" for n in names)])
    for key, label, digits in (("mean_accuracy", "mean accuracy", 3), ("mean_normalised_mae", "mean MAE / range", 4)):
        if first.get(key) is not None:
            rows.append([label, "", *(f"{metrics[n][key]:.{digits}f}" for n in names)])
    rows.append(["render distance", "masked L1", *(f"{metrics[n]['render_distance']['masked_l1']['mean']:.4f}" for n in names)])
    notes = (f"Held-out set: {held.get('note')}. Render distance: the predicted and true vectors rendered by the "
             "engine, mean |RGB| difference over avatar pixels (LPIPS only with --lpips-weights).")
    if confs:
        notes += (" Where the answers go (options answered far more or less often than they are true): "
                  + "; ".join(f"{name}: {shift_sentence(c)}" for name, c in confs.items())
                  + ". The matrices: `confusion` in the JSON, and the plot below (rows: true option, columns: answer).")
    return Table("accuracy", {"set": held, "metrics": metrics, "confusion": confs}, ["parameter", "metric", *names],
                 rows, notes=notes, plots={"accuracy_confusion": confusion_figure(confs)} if confs else {})
