"""Per-parameter metrics of an estimator: accuracy for discrete parameters, MAE for continuous ones."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..schema import AvatarSchema
from .model import AvatarEstimator
from .predict import predict_arrays


def parameter_metrics(schema: AvatarSchema, pred_c: np.ndarray, pred_d: np.ndarray, continuous: np.ndarray,
                      discrete: np.ndarray) -> dict[str, Any]:
    """Per-parameter accuracy (discrete) and MAE in parameter units (continuous), plus their means."""
    metrics: dict[str, Any] = {"accuracy": {}, "mae": {}}
    for i, p in enumerate(schema.discrete):
        metrics["accuracy"][p.name] = float((pred_d[:, i] == discrete[:, i]).mean())
    for i, p in enumerate(schema.continuous):
        metrics["mae"][p.name] = float(np.abs(pred_c[:, i] - continuous[:, i]).mean() * (p.high - p.low))
    if metrics["accuracy"]:
        metrics["mean_accuracy"] = float(np.mean(list(metrics["accuracy"].values())))
    if metrics["mae"]:
        metrics["mean_mae"] = float(np.mean(list(metrics["mae"].values())))
    return metrics


def evaluate_arrays(model: AvatarEstimator, images: np.ndarray, continuous: np.ndarray, discrete: np.ndarray,
                    size: int, device: torch.device) -> dict[str, Any]:
    pc, pd, _ = predict_arrays(model, images, size, device)
    return parameter_metrics(model.schema, pc, pd, continuous, discrete)
