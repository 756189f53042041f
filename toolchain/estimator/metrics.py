"""Per-parameter metrics of an estimator: accuracy for discrete parameters, MAE for continuous ones.

Continuous errors are given twice: in each parameter's own units (``mae``: degrees, millimetres, 0-1 sliders...,
what a user reads for one parameter) and as a fraction of its range (``normalised_mae``, :func:`normalised_mae`),
the only form in which parameters can be compared or averaged. The mean is taken over the normalised errors only
(``mean_normalised_mae``): a mean of degrees and 0-1 sliders says nothing.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ..schema import AvatarSchema
from .model import AvatarEstimator
from .predict import predict_arrays


def normalised_mae(mae: Mapping[str, float], schema: AvatarSchema) -> dict[str, float]:
    """Each continuous parameter's MAE (in its own units) as a fraction of its range (``high - low``)."""
    span = {p.name: p.high - p.low for p in schema.continuous}
    return {k: float(v / span[k]) for k, v in mae.items()}


def mean_normalised_mae(metrics: Mapping[str, Any], schema: AvatarSchema) -> float | None:
    """The mean over continuous parameters of their range-normalised MAE (None without continuous parameters).
    Computed from ``metrics["mae"]``, so it also reads metrics written before ``normalised_mae`` was stored."""
    if not metrics.get("mae"):
        return None
    return float(np.mean(list(normalised_mae(metrics["mae"], schema).values())))


def parameter_metrics(schema: AvatarSchema, pred_c: np.ndarray, pred_d: np.ndarray, continuous: np.ndarray,
                      discrete: np.ndarray) -> dict[str, Any]:
    """Per-parameter accuracy (discrete), MAE in parameter units and as a fraction of each range (continuous), plus
    the mean accuracy and the mean range-normalised MAE."""
    metrics: dict[str, Any] = {"accuracy": {}, "mae": {}}
    for i, p in enumerate(schema.discrete):
        metrics["accuracy"][p.name] = float((pred_d[:, i] == discrete[:, i]).mean())
    for i, p in enumerate(schema.continuous):
        metrics["mae"][p.name] = float(np.abs(pred_c[:, i] - continuous[:, i]).mean() * (p.high - p.low))
    if metrics["accuracy"]:
        metrics["mean_accuracy"] = float(np.mean(list(metrics["accuracy"].values())))
    if metrics["mae"]:
        metrics["normalised_mae"] = normalised_mae(metrics["mae"], schema)
        metrics["mean_normalised_mae"] = mean_normalised_mae(metrics, schema)
    return metrics


def evaluate_arrays(model: AvatarEstimator, images: np.ndarray, continuous: np.ndarray, discrete: np.ndarray,
                    size: int, device: torch.device) -> dict[str, Any]:
    pc, pd, _ = predict_arrays(model, images, size, device)
    return parameter_metrics(model.schema, pc, pd, continuous, discrete)
