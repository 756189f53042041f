"""Parity of exported models with torch: discrete argmax agreement, continuous abs error, size, status.

Each row compares one format × precision with the torch model on the same normalised images. The gate is
per parameter: every discrete head must reach its precision's agreement threshold on its own (an average over
many heads hides one bad head: int8 once passed at 0.980 pooled with one head at 0.935), and every continuous
parameter its mean error threshold, in units of its range. The pooled agreement is still reported, beside the
worst head that decides.
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
    cont_mean_abs: float | None = None             # over all continuous parameters and images (reported)
    cont_max_abs: float | None = None              # the worst single value (gated)
    cont_per_param: dict[str, float] = field(default_factory=dict)   # mean abs error per parameter (gated)
    worst_cont: str | None = None                  # the continuous parameter with the largest mean error
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

    Every discrete head gates on its own argmax agreement (``thresholds``: the worst head decides; the pooled
    figure is reported only). Continuous outputs, each parameter's value as a fraction of its range, gate per
    parameter on the mean absolute error and on the worst single value, in those units
    (``continuous_thresholds``). Any one outside its threshold makes the row ``below threshold``, and the reason
    names the parameter.
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
            params = info.get("parameters") or [f"continuous[{i}]" for i in range(err.shape[1])]
            row.cont_per_param = {p: float(e) for p, e in zip(params, err.mean(0))}
            row.worst_cont = max(row.cont_per_param, key=row.cont_per_param.get) if row.cont_per_param else None
    row.n_images = int(len(next(iter(ref.values()))))
    if total:
        row.agreement = agree / total
        worst = min(row.per_head, key=row.per_head.get)
        row.worst_head, row.worst_head_agreement = worst, row.per_head[worst]
    row.threshold = thresholds.get(row.precision)
    row.cont_threshold = continuous_thresholds.get(row.precision) if row.cont_mean_abs is not None else None
    row.status, row.reason = gate(row)
    return row


def gate(row: ParityRow) -> tuple[str, str]:
    """(status, reason) of a measured row: each discrete head against ``row.threshold``, each continuous
    parameter's mean error and the worst single error against ``row.cont_threshold`` (``{"mean", "max"}``)."""
    problems = []
    if row.threshold is not None:
        low = {h: a for h, a in row.per_head.items() if a < row.threshold}
        if low:
            worst_first = sorted(low.items(), key=lambda kv: kv[1])
            heads = ", ".join(f"{h} {a:.4f}" for h, a in worst_first[:8]) + (", …" if len(low) > 8 else "")
            problems.append(f"{len(low)} of {len(row.per_head)} discrete heads below {row.threshold} agreement "
                            f"({heads}; pooled {row.agreement:.4f})")
    if row.cont_mean_abs is not None:
        lim = row.cont_threshold or {}
        if "mean" in lim:
            high = {p: e for p, e in row.cont_per_param.items() if e > lim["mean"]}
            if high:
                params = ", ".join(f"{p} {e:.2e}" for p, e in sorted(high.items(), key=lambda kv: -kv[1]))
                problems.append(f"continuous mean error above {lim['mean']} of the range for {params}")
        if "max" in lim and row.cont_max_abs > lim["max"]:
            problems.append(f"continuous max error {row.cont_max_abs:.2e} > {lim['max']} of the range")
    return (BELOW if problems else VALIDATED), "; ".join(problems)


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(rows: list[ParityRow], title: str = "Export parity", notes: str = "") -> str:
    lines = [f"# {title}", "",
             "| format | precision | file | size MB | status | worst head (gated) | pooled agreement | worst continuous mean abs (gated) | continuous max abs (gated) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        worst = "–" if r.worst_head is None else f"{r.worst_head} {r.worst_head_agreement:.4f}"
        status = r.status + (f" ({r.reason})" if r.reason else "") + ("; left out of the bundle" if r.bundled is False else "")
        size = "–" if r.size_bytes is None else f"{r.size_bytes / 1e6:.2f}"
        cont = "–" if r.worst_cont is None else f"{r.worst_cont} {r.cont_per_param[r.worst_cont]:.2e}"
        lines.append(f"| {r.format} | {r.precision} | {r.file} | {size} | {status} | {worst} | {_fmt(r.agreement, '.4f')} "
                     f"| {cont} | {_fmt(r.cont_max_abs, '.2e')} |")
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"
