"""Confidence calibration at export time: one temperature per discrete head, fitted on held-out labelled data.

The labelled evaluation set is split in two interleaved halves: temperatures are fitted on one (minimum
negative log-likelihood over a log-spaced grid, 0.05–20) and expected calibration error (ECE, 15
equal-width confidence bins) is reported on the other, before and after, with top-1 and top-3 accuracy.
The SDK divides each head's logits by its temperature before the softmax (argmax, and so every answer,
is unchanged; only the probabilities move).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from sdk_python.contract import output_name

GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
BINS = 15
MIN_IMAGES = 20


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: |accuracy − confidence| per confidence bin, weighted by the bin's share."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(total)


def topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    best = np.argsort(-logits, axis=1)[:, :k]
    return float((best == labels[:, None]).any(axis=1).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    losses = [nll(logits, labels, t) for t in GRID]
    return float(GRID[int(np.argmin(losses))])


def calibrate(logits_by_output: dict[str, np.ndarray], vectors: list[dict[str, Any]], schema: dict) -> dict[str, Any]:
    """Fit and evaluate temperatures for every discrete parameter.

    Args:
        logits_by_output: torch logits by output name, one row per image.
        vectors: the images' labelled vectors (discrete values are option indices), same order.
        schema: the engine schema JSON.
    Returns:
        ``{"temperatures": {param: T}, "per_head": {param: {ece_before, ece_after, top1, top3, ...}}, ...}``, or
        ``{"skipped": reason}`` when there are too few labelled images.
    """
    n = len(vectors)
    if n < MIN_IMAGES:
        return {"skipped": f"{n} labelled images; temperature scaling needs at least {MIN_IMAGES}"}
    fit, held = np.arange(0, n, 2), np.arange(1, n, 2)
    temps: dict[str, float] = {}
    per_head: dict[str, dict[str, float]] = {}
    for p in (p for p in schema["params"] if p["kind"] == "discrete"):
        name = p["name"]
        logits = np.asarray(logits_by_output[output_name(name)], np.float64)
        labels = np.array([int(v[name]) for v in vectors])
        t = fit_temperature(logits[fit], labels[fit])
        temps[name] = round(t, 4)
        lh, yh = logits[held], labels[held]
        per_head[name] = {"ece_before": ece(_softmax(lh), yh), "ece_after": ece(_softmax(lh / t), yh),
                          "nll_before": nll(lh, yh), "nll_after": nll(lh, yh, t),
                          "top1": topk(lh, yh, 1), "top3": topk(lh, yh, 3), "options": len(p["options"])}
    return {"method": "temperature scaling per discrete head (NLL on a log grid 0.05-20)",
            "temperatures": temps, "per_head": per_head, "fit_images": int(len(fit)), "eval_images": int(len(held)),
            "bins": BINS}


def markdown(cal: dict[str, Any], title: str) -> str:
    if "skipped" in cal:
        return f"# {title}\n\nNot calibrated: {cal['skipped']}. Confidences are the raw softmax.\n"
    lines = [f"# {title}", "",
             f"Temperatures fitted on {cal['fit_images']} held-out images, measured on the other {cal['eval_images']} "
             f"(interleaved halves). ECE with {cal['bins']} equal-width bins.", "",
             "| parameter | options | temperature | ECE before | ECE after | NLL before | NLL after | top-1 | top-3 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, h in cal["per_head"].items():
        lines.append(f"| {name} | {h['options']} | {cal['temperatures'][name]:.3f} | {h['ece_before']:.4f} | "
                     f"{h['ece_after']:.4f} | {h['nll_before']:.3f} | {h['nll_after']:.3f} | {h['top1']:.3f} | "
                     f"{h['top3']:.3f} |")
    return "\n".join(lines) + "\n"
