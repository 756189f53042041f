"""Per-format latency of exported estimators beside torch eager, measured in one process (batch 1,
warm-up first), so the ratios hold on a noisy machine even when the absolute numbers move."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def time_calls(fn: Callable[[], Any], warmup: int, runs: int) -> list[float]:
    """Milliseconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def summarise(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    p50 = float(np.percentile(a, 50))
    return {"p50_ms": round(p50, 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "hz_p50": round(1e3 / p50, 1) if p50 > 0 else None,
            "runs": len(samples_ms)}


_TORCH_ALONE = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from toolchain.estimator.io import load_estimator
m, _ = load_estimator(sys.argv[1])
x = torch.randn(1, 3, m.config.input_size, m.config.input_size)
with torch.inference_mode():
    for _ in range(int(sys.argv[4])):
        m(x)
    t = []
    for _ in range(int(sys.argv[3])):
        t0 = time.perf_counter(); m(x); t.append((time.perf_counter() - t0) * 1e3)
print(json.dumps(t))
"""


def torch_eager_alone(model_path: str | Path, runs: int, warmup: int, threads: int) -> list[float] | None:
    """Torch eager timings in a fresh process: with TensorFlow or MediaPipe loaded beside it (as in an export
    or SDK process), torch's CPU threads run many times slower here, which would flatter every ratio."""
    import json
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _TORCH_ALONE, str(model_path), str(threads), str(runs), str(warmup)],
                          capture_output=True, text=True, cwd=root, timeout=1800)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def export_latency(model_path: str | Path, export_report: dict[str, Any], export_dir: str | Path, runs: int = 50,
                   warmup: int = 5, threads: int = 2) -> list[dict[str, Any]]:
    """Time torch eager (own process) and every exported ONNX / TFLite / torch.export file of ``export_report`` on one random
    input. CoreML rows say they run on macOS only. Each row carries its parity status ("; left out of the
    bundle" for a below-threshold model the bundle does not hold)."""
    from .onnx_export import onnx_session, run_onnx
    from .tflite_export import TFLiteRunner, nchw_to_nhwc
    from toolchain.estimator.io import load_estimator
    export_dir = Path(export_dir)
    model, _ = load_estimator(model_path)
    size = int(model.config.input_size)
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    rows: list[dict[str, Any]] = []
    alone = torch_eager_alone(model_path, runs, warmup, threads)
    rows.append({"format": "torch", "precision": "fp32 (eager, own process)", "status": "reference",
                 **(summarise(alone) if alone else {"note": "torch eager run failed"})})
    for r in export_report.get("rows", []):
        row = {"format": r["format"], "precision": r["precision"],
               "status": r["status"] + ("; left out of the bundle" if r.get("bundled") is False else "")}
        path = export_dir / r["file"]
        if r["status"] == "failed" or not path.exists():
            rows.append({**row, "note": "not exported"})
            continue
        if r["format"] == "onnx":
            sess = onnx_session(path, threads)
            rows.append({**row, **summarise(time_calls(lambda: run_onnx(sess, x), warmup, runs))})
        elif r["format"] == "tflite":
            rec = export_report.get("records", {}).get(f"tflite:{r['precision']}")
            if rec is None:
                rows.append({**row, "note": "no output map recorded"})
                continue
            runner = TFLiteRunner(path, rec["output_map"], threads=threads)
            xn = nchw_to_nhwc(x)
            rows.append({**row, **summarise(time_calls(lambda: runner(xn), warmup, runs))})
        elif r["format"] == "torch":
            from .torch_export import run_exported
            rec = export_report.get("records", {}).get(f"torch:{r['precision']}")
            if rec is None:
                rows.append({**row, "note": "no output order recorded"})
                continue
            run = run_exported(path, rec)
            rows.append({**row, **summarise(time_calls(lambda: run(x), warmup, runs))})
        else:
            rows.append({**row, "note": "CoreML predicts on macOS only"})
    return rows
