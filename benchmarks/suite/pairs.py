"""The build's paired dataset as it is: samples, sources kept and dropped by the quality filter, and the
distribution of final inversion losses (a description of the build's data; nothing is re-timed)."""
from __future__ import annotations

import numpy as np

from toolchain.data.paired_dataset import PairedDataset

from .common import BuildRun, Table


def run(build: BuildRun, quick: bool) -> Table:
    out = build.output("pairs")
    ds = PairedDataset.open(out["dataset"], verify=False)
    losses = np.array([p["loss"] for p in ds.provenance if p.get("aug") == 0 and "loss" in p])
    steps = np.array([p["steps"] for p in ds.provenance if p.get("aug") == 0 and "steps" in p])
    dropped = ds.meta.get("progress", {}).get("dropped", [])
    q = {f"p{k}": float(np.percentile(losses, k)) for k in (10, 50, 90, 99)} if len(losses) else {}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    all_losses = np.concatenate([losses, [d["loss"] for d in dropped]]) if dropped else losses
    ax.hist(all_losses, bins=40, color="#4c78a8")
    fixed = out.get("max_loss")
    if isinstance(fixed, (int, float)):
        ax.axvline(fixed, color="#e45756", linestyle="--", label=f"quality filter {fixed}")
        ax.legend()
    elif dropped:
        ax.hist([d["loss"] for d in dropped], bins=40, color="#e45756", label="dropped (chunk outliers)")
        ax.legend()
    ax.set(xlabel="final inversion loss", ylabel="sources", title="inversion loss per source")
    fig.tight_layout()
    data = {"samples": len(ds), "kept_sources": int(len(losses)), "dropped_sources": len(dropped),
            "max_loss": out.get("max_loss"), "loss_quantiles": q, "mean_steps": float(steps.mean()) if len(steps) else None,
            "lpips": ds.meta.get("lpips")}
    rows = [[len(ds), len(losses), len(dropped), out.get("max_loss"), *(f"{q[k]:.4f}" for k in ("p10", "p50", "p90", "p99"))]]
    return Table("pairs", data, ["samples", "sources kept", "dropped", "filter", "loss p10", "p50", "p90", "p99"], rows,
                 notes="Final loss of each kept source's inversion, from the dataset's provenance.",
                 plots={"pairs_losses": fig})
