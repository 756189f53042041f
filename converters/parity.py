"""Parity of exported models with torch: discrete argmax agreement, continuous abs error, size, status.

Each row compares one format × precision with the torch model on the same normalised images. The
pass thresholds are on *pooled* discrete agreement (all heads × all images); the worst head is
reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sdk_python.contract import (AGREEMENT_THRESHOLDS as DEFAULT_THRESHOLDS, BELOW, CONTINUOUS_THRESHOLDS, FAILED,
                                 NOT_RUN, UNVALIDATED, VALIDATED, output_name)

# The status words (validated / below threshold / not run here / unvalidated / failed) and thresholds are the
# model contract's: parity.json, parity.md, the bundle manifest, `bundle inspect` and the SDK say the same.


@dataclass
class ParityRow:
    format: str
    precision: str
    file: str
    size_bytes: int | None = None
    status: str = UNVALIDATED
    reason: str = ""
    agreement: float | None = None
    worst_head: str | None = None
    worst_head_agreement: float | None = None
    per_head: dict[str, float] = field(default_factory=dict)
    cont_mean_abs: float | None = None
    cont_max_abs: float | None = None
    threshold: float | None = None
    cont_threshold: dict[str, float] | None = None   # {"mean", "max"} abs error in units of each parameter's range
    n_images: int = 0
    bundled: bool | None = None    # in the bundle? (None: no bundle written)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def torch_reference(model, x_nchw: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """Torch outputs by export output name."""
    import torch
    outs: dict[str, list[np.ndarray]] = {}
    model.eval()
    with torch.no_grad():
        for k in range(0, len(x_nchw), batch):
            for head, v in model(torch.from_numpy(x_nchw[k:k + batch])).items():
                outs.setdefault(output_name(head), []).append(v.float().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def run_batched(fn: Callable[[np.ndarray], dict[str, np.ndarray]], x: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    outs: dict[str, list[np.ndarray]] = {}
    for k in range(0, len(x), batch):
        for name, v in fn(x[k:k + batch]).items():
            outs.setdefault(name, []).append(np.asarray(v, np.float32))
    return {k: np.concatenate(v) for k, v in outs.items()}


def compare(row: ParityRow, ref: dict[str, np.ndarray], got: dict[str, np.ndarray], outputs: dict[str, dict],
            thresholds: dict[str, float] = DEFAULT_THRESHOLDS,
            continuous_thresholds: dict[str, dict[str, float]] = CONTINUOUS_THRESHOLDS) -> ParityRow:
    """Fill ``row``'s numbers from reference and exported outputs (both keyed by output name) and its status.

    Discrete heads gate on pooled argmax agreement (``thresholds``); continuous outputs, which are each
    parameter's value as a fraction of its range, gate on their mean and worst absolute error in those units
    (``continuous_thresholds``). Either one outside its threshold makes the row ``below threshold``.
    """
    missing = [n for n in outputs if n not in got]
    if missing:
        row.status, row.reason = FAILED, f"outputs missing: {missing}"
        return row
    agree, total = 0, 0
    for name, info in outputs.items():
        if got[name].shape != ref[name].shape:
            row.status, row.reason = FAILED, f"output {name} has shape {got[name].shape}, torch {ref[name].shape}"
            return row
        if info["kind"] == "discrete":
            same = ref[name].argmax(1) == got[name].argmax(1)
            row.per_head[info["parameter"]] = float(same.mean())
            agree += int(same.sum())
            total += same.size
        else:
            err = np.abs(np.clip(ref[name], 0, 1) - np.clip(got[name], 0, 1))
            row.cont_mean_abs, row.cont_max_abs = float(err.mean()), float(err.max())
    row.n_images = int(len(next(iter(ref.values()))))
    if total:
        row.agreement = agree / total
        worst = min(row.per_head, key=row.per_head.get)
        row.worst_head, row.worst_head_agreement = worst, row.per_head[worst]
    row.threshold = thresholds.get(row.precision)
    problems = []
    if row.agreement is not None and row.threshold is not None and row.agreement < row.threshold:
        problems.append(f"agreement {row.agreement:.4f} < {row.threshold}")
    if row.cont_mean_abs is not None:
        row.cont_threshold = continuous_thresholds.get(row.precision)
        lim = row.cont_threshold or {}
        if "mean" in lim and row.cont_mean_abs > lim["mean"]:
            problems.append(f"continuous mean error {row.cont_mean_abs:.2e} > {lim['mean']} of the range")
        if "max" in lim and row.cont_max_abs > lim["max"]:
            problems.append(f"continuous max error {row.cont_max_abs:.2e} > {lim['max']} of the range")
    row.status = BELOW if problems else VALIDATED
    row.reason = "; ".join(problems)
    return row


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(rows: list[ParityRow], title: str = "Export parity", notes: str = "") -> str:
    lines = [f"# {title}", "",
             "| format | precision | file | size MB | status | discrete agreement | worst head | continuous mean abs | continuous max abs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        worst = "–" if r.worst_head is None else f"{r.worst_head} {r.worst_head_agreement:.4f}"
        status = r.status + (f" ({r.reason})" if r.reason else "") + ("; left out of the bundle" if r.bundled is False else "")
        size = "–" if r.size_bytes is None else f"{r.size_bytes / 1e6:.2f}"
        lines.append(f"| {r.format} | {r.precision} | {r.file} | {size} | {status} | {_fmt(r.agreement, '.4f')} | {worst} "
                     f"| {_fmt(r.cont_mean_abs, '.2e')} | {_fmt(r.cont_max_abs, '.2e')} |")
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"
