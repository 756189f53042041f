"""Where an estimator's discrete answers go: per parameter, how many held-out images of each true option were
answered with each option (rows: the truth, columns: the answer).

Accuracy says how often an estimator is right; the matrix says what it answers instead. The two failures it
tells apart need different fixes: an estimator that calls most glasses-free photos "rectangle" (its answers'
shares far from the images' own) learned a cue from its training images that the photos do not share, while
one that mixes up "round" and "rectangle" reads the part but not its detail.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..atomic_io import save_figure_atomic
from ..schema import AvatarSchema

Confusion = dict[str, dict[str, Any]]   # parameter -> {"options": [...], "counts": rows true, columns answered}


def confusion_matrices(schema: AvatarSchema, predicted: np.ndarray, truth: np.ndarray) -> Confusion:
    """Per discrete parameter, the counts of (true option, answered option) over the images.

    ``predicted`` and ``truth`` are class indices ``[N, D]`` in the schema's discrete order."""
    if predicted.shape != truth.shape or predicted.ndim != 2 or predicted.shape[1] != len(schema.discrete):
        raise ValueError(f"predicted {predicted.shape} and true {truth.shape} option indices must both be "
                         f"[images, {len(schema.discrete)}] (one column per discrete parameter)")
    out: Confusion = {}
    for i, p in enumerate(schema.discrete):
        k = len(p.options)
        counts = np.bincount(truth[:, i].astype(np.int64) * k + predicted[:, i].astype(np.int64), minlength=k * k)
        out[p.name] = {"options": list(p.options), "counts": counts.reshape(k, k).tolist()}
    return out


def option_rows(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per option: its share of the images, its share of the answers, and its recall (None when no
    image has it)."""
    counts = np.asarray(entry["counts"], dtype=np.int64)
    n = max(int(counts.sum()), 1)
    true_n, answered_n = counts.sum(1), counts.sum(0)
    return [{"option": o, "images": int(true_n[j]), "image_share": float(true_n[j] / n),
             "answer_share": float(answered_n[j] / n),
             "recall": float(counts[j, j] / true_n[j]) if true_n[j] else None}
            for j, o in enumerate(entry["options"])]


def largest_shifts(conf: Confusion, top: int = 3) -> list[dict[str, Any]]:
    """The options whose share of the answers is furthest from their share of the images, largest first."""
    rows = [{"parameter": name, **r} for name, entry in conf.items() for r in option_rows(entry)]
    rows.sort(key=lambda r: abs(r["answer_share"] - r["image_share"]), reverse=True)
    return rows[:top]


def shift_sentence(conf: Confusion, top: int = 2) -> str:
    """``glasses 'none': 37 % of the images, 6 % of the answers; ...`` for the largest shifts."""
    return "; ".join(f"{r['parameter']} '{r['option']}': {_pct(r['image_share'])} of the images, "
                     f"{_pct(r['answer_share'])} of the answers" for r in largest_shifts(conf, top))


def confusion_markdown(conf: Confusion) -> list[str]:
    """A table per parameter: each option's share of the images and of the answers, and its recall."""
    lines = ["| parameter | option | images | share of images | share of answers | recall |", "|---|---|---|---|---|---|"]
    for name, entry in conf.items():
        for r in option_rows(entry):
            recall = "—" if r["recall"] is None else f"{r['recall']:.2f}"
            lines.append(f"| {name} | {r['option']} | {r['images']} | {_pct(r['image_share'])} | "
                         f"{_pct(r['answer_share'])} | {recall} |")
    return lines


def confusion_figure(confs: Mapping[str, Confusion]):
    """One matplotlib figure: a row of row-normalised heatmaps per model (one per parameter); a model named ""
    gets titles of the parameter alone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(confs)
    params = list(confs[models[0]]) if models else []
    fig, axes = plt.subplots(len(models), max(len(params), 1), squeeze=False,
                             figsize=(2.6 * max(len(params), 1), 2.9 * max(len(models), 1)))
    for r, model in enumerate(models):
        for c, name in enumerate(params):
            ax = axes[r][c]
            counts = np.asarray(confs[model][name]["counts"], dtype=np.float64)
            rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
            ax.imshow(rows, vmin=0, vmax=1, cmap="viridis")
            labels = _short(confs[model][name]["options"])
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
            ax.set_title(f"{model}: {name}" if model else name, fontsize=8)
            if c == 0:
                ax.set_ylabel("true option", fontsize=7)
            ax.set_xlabel("answer", fontsize=7)
    fig.tight_layout()
    return fig


def save_confusion_png(confs: Mapping[str, Confusion], path: str | Path) -> Path:
    """:func:`confusion_figure` written atomically as a PNG."""
    return save_figure_atomic(path, confusion_figure(confs), dpi=110)


def _pct(share: float) -> str:
    return f"{100 * share:.0f} %"


def _short(options: Sequence[str], width: int = 9) -> list[str]:
    return [o if len(o) <= width else o[: width - 1] + "…" for o in options]
