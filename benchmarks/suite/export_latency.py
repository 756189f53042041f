"""Latency of every exported model of the build beside torch eager, in one process (batch 1, 2 threads)."""
from __future__ import annotations

import json
from pathlib import Path

from converters.latency import export_latency
from sdk_python.bundle import open_bundle
from toolchain.estimator.io import load_estimator

from .common import BuildRun, Table


def run(build: BuildRun, quick: bool) -> Table:
    out = build.output("export")
    bundle = Path(out["bundle"])
    with open_bundle(bundle) as b:
        records = {f"{m['format']}:{m['precision']}": m for m in b.manifest["models"]}
    parity_json = bundle.parent / "parity.json"   # also records the models left out of the bundle (below threshold)
    if parity_json.is_file():
        records = {**json.loads(parity_json.read_text()).get("records", {}), **records}
    model_path = build.output("train")["model"]
    model, _ = load_estimator(model_path)
    runs = 10 if quick else 200
    rows = export_latency(model_path, {"rows": out["parity"], "records": records}, bundle.parent, runs=runs,
                          warmup=3 if quick else 20)
    torch_p50 = rows[0].get("p50_ms")
    table = [[r["format"], r["precision"], r.get("status", ""), r.get("p50_ms", "—"), r.get("p90_ms", "—"),
              r.get("p99_ms", "—"), r.get("hz_p50") or r.get("note", "—"),
              f"{torch_p50 / r['p50_ms']:.2f}x" if r.get("p50_ms") and torch_p50 else ""] for r in rows]
    return Table("export_latency", {"rows": rows, "input_size": model.config.input_size, "runs": runs},
                 ["format", "precision", "parity", "p50 ms", "p90 ms", "p99 ms", "Hz (p50)", "vs torch eager"], table,
                 notes=f"Estimator only, batch 1, {model.config.input_size} px input, 2 threads, {runs} timed runs after "
                       "warm-up; the parity column is each model's status in the bundle.")
