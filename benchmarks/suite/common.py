"""What every benchmark of a build shares: the run it measures and the table it returns."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from toolchain.errors import AvatarToolError
from toolchain.pipeline.build import load_run_config
from toolchain.pipeline.config import BuildConfig
from toolchain.pipeline.runner import read_record


@dataclass
class Table:
    name: str
    data: dict[str, Any]
    headers: list[str]
    rows: list[list[Any]]
    notes: str = ""
    plots: dict[str, Any] = field(default_factory=dict)   # file stem -> matplotlib Figure


@dataclass
class BuildRun:
    """A finished ``avatartool build`` run directory, read through its stage records."""
    root: Path
    cfg: BuildConfig
    records: dict[str, dict[str, Any]]

    @classmethod
    def open(cls, root: str | Path) -> "BuildRun":
        root = Path(root)
        if not (root / "config.json").is_file():
            raise AvatarToolError(f"{root} is not a build run (no config.json): make one with `avatartool build`")
        records = {}
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            rec = read_record(d)
            if rec is not None:
                records[d.name] = rec
        return cls(root=root, cfg=load_run_config(root), records=records)

    def output(self, stage: str) -> dict[str, Any]:
        rec = self.records.get(stage)
        if rec is None or rec.get("status") != "complete":
            raise AvatarToolError(f"{self.root}: stage '{stage}' has not finished; rerun `avatartool build` on it first")
        return rec["outputs"]

    def has(self, stage: str) -> bool:
        return self.records.get(stage, {}).get("status") == "complete"

    def describe(self) -> dict[str, Any]:
        return {"run": str(self.root.resolve()), "engine": self.cfg.engine, "preset": self.cfg.preset,
                "config": json.loads((self.root / "config.json").read_text())}


def image_rows_figure(rows: Sequence[tuple[str, Sequence[Any]]]):
    """A matplotlib figure with one labelled strip per row (each row: a label and equally sized uint8 images)."""
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(len(rows), 1, figsize=(len(rows[0][1]) * 0.9, len(rows) * 1.05))
    for ax, (label, imgs) in zip(np.atleast_1d(axes), rows):
        ax.imshow(np.concatenate(list(imgs), 1), interpolation="nearest")
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig
