"""Continuous errors are comparable across parameters: every MAE is also given as a share of its parameter's range,
and means are taken over those shares only (a mean of degrees and 0-1 sliders says nothing). One function does it,
for evaluation, the report, the benchmarks and the ablation."""
from __future__ import annotations

import numpy as np
import pytest

import benchmarks.ablation as ablation
from toolchain.estimator import metrics as M
from toolchain.evaluation.evaluate import _markdown
from toolchain.pipeline.report import _eval_rows, headline
from toolchain.schema import AvatarSchema

SCHEMA = AvatarSchema.from_json({"engine": "mixed", "parts": ["background"], "params": [
    {"name": "yaw", "kind": "continuous", "low": -180.0, "high": 180.0, "default": 0.0},
    {"name": "smile", "kind": "continuous", "low": 0.0, "high": 1.0, "default": 0.5},
    {"name": "hat", "kind": "discrete", "options": ["none", "cap"], "default": 0}]})


def _metrics(err_yaw_deg: float, err_smile: float) -> dict:
    gt_c = np.full((4, 2), 0.5, np.float32)
    pred_c = gt_c + np.array([err_yaw_deg / 360.0, err_smile], np.float32)   # predictions are in [0, 1] units
    d = np.zeros((4, 1), np.int64)
    return M.parameter_metrics(SCHEMA, pred_c, d, gt_c, d)


def test_mae_in_own_units_and_as_a_share_of_the_range():
    m = _metrics(36.0, 0.1)
    assert m["mae"] == pytest.approx({"yaw": 36.0, "smile": 0.1})            # what a user reads per parameter
    assert m["normalised_mae"] == pytest.approx({"yaw": 0.1, "smile": 0.1})  # comparable: both 10 % of the range
    assert m["mean_normalised_mae"] == pytest.approx(0.1)
    assert "mean_mae" not in m                                                # the unit-mixing mean is gone


def test_one_function_shared_with_the_ablation():
    assert ablation.mean_normalised_mae is M.mean_normalised_mae
    assert not hasattr(ablation, "_normalised_mae")
    old = {"mae": {"yaw": 18.0, "smile": 0.3}}                               # metrics written before the field
    assert M.mean_normalised_mae(old, SCHEMA) == pytest.approx((0.05 + 0.3) / 2)


def _model(err_yaw, err_smile, dist):
    return {"metrics": {**_metrics(err_yaw, err_smile),
                        "render_distance": {"masked_l1": {"mean": dist}, "lpips": {"available": False, "reason": "no weights"}}}}


def test_report_rows_and_headline_use_the_normalised_mean():
    models = {"swiftavatar": _model(36.0, 0.1, 0.1), "baseline": _model(72.0, 0.3, 0.2)}
    text = headline(models)
    assert "mean continuous error 10.0% vs 25.0% of each parameter's range" in text and "MAE" not in text
    header, rows = _eval_rows(models)
    kinds = {(r[0], r[1]): r[2:] for r in rows}
    assert kinds[("yaw", "MAE (its units)")] == ["36.0000", "72.0000"]
    assert kinds[("yaw", "MAE / range")] == ["0.1000", "0.2000"]
    assert kinds[("mean", "MAE / range")] == ["0.1000", "0.2500"]


def test_eval_markdown_gives_both_units():
    m = _model(36.0, 0.1, 0.1)["metrics"]
    md = _markdown({"set_kind": "proxy", "n": 4, "engine": "mixed", "model": "m.pt", "metrics": m, "model_backbone": {}})
    assert "| yaw | MAE (its units; share of its range) | 36.0000 (10.00%) |" in md
    assert "| **mean** | MAE as a share of each range | **10.00%** |" in md
