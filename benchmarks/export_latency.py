"""Per-format estimator latency beside torch eager from the same run (2 threads, warm-up, >= 200 runs).

    .venv/bin/python benchmarks/export_latency.py --export runs/export-alter --model runs/baseline-alter/train/estimator.pt

Writes benchmarks/results/export_latency_<engine>.json and .md. CoreML runs on macOS only (skipped elsewhere).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402


def _time(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True, type=Path)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from converters.onnx_export import onnx_session, run_onnx
    from converters.tflite_export import TFLiteRunner, nchw_to_nhwc
    from sdk_python.bundle import open_bundle
    from toolchain.estimator.io import load_estimator

    torch.set_num_threads(args.threads)
    model, _ = load_estimator(args.model)
    size = model.config.input_size
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    bundle = next(args.export.glob("*.swiftavatar"))
    with open_bundle(bundle) as b:
        entries = b.manifest["models"]
    cases = {}
    xt = torch.from_numpy(x)

    def torch_eager():
        with torch.no_grad():
            model(xt)
    cases["torch eager fp32"] = torch_eager
    for e in entries:
        path = args.export / e["file"]
        if e["format"] == "onnx":
            sess = onnx_session(path, args.threads)
            cases["onnxruntime fp32"] = lambda s=sess: run_onnx(s, x)
        elif e["format"] == "tflite":
            runner = TFLiteRunner(path, e["output_map"], threads=args.threads)
            xn = nchw_to_nhwc(x)
            cases[f"tflite {e['precision']}"] = lambda r=runner: r(xn)
    rows, raw = [], {}
    # torch eager measured first and last: the ratio column uses their mean, so drift shows up
    order = list(cases) + ["torch eager fp32 (again)"]
    for name in order:
        fn = cases["torch eager fp32"] if name.endswith("(again)") else cases[name]
        raw[name] = _time(fn, args.warmup, args.runs)
    t_ref = np.mean([np.median(raw["torch eager fp32"]), np.median(raw["torch eager fp32 (again)"])])
    for name in order:
        s = np.asarray(raw[name])
        p50, p90, p99 = np.percentile(s, [50, 90, 99])
        size_mb = ""
        for e in entries:
            if name == f"tflite {e['precision']}" and e["format"] == "tflite" or (name.startswith("onnx") and e["format"] == "onnx"):
                size_mb = f"{(args.export / e['file']).stat().st_size / 1e6:.1f}"
        rows.append([name, size_mb, f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}", f"{1000 / p50:.0f}", f"{t_ref / p50:.2f}x"])
    rows.append(["coreml fp16 / int8", "", "macOS only", "", "", "", ""])
    engine = model.schema.engine
    write_report(f"export_latency_{engine}",
                 {"config": {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "input_size": size,
                             "batch": 1, "export": str(args.export)},
                  "samples_ms": raw},
                 ["runtime", "file MB", "p50 ms", "p90 ms", "p99 ms", "Hz (p50)", "speed-up vs torch"], rows,
                 notes=f"Engine '{engine}', input {size}x{size}, batch 1, {args.threads} threads, {args.warmup} warm-up "
                       f"then {args.runs} timed runs each, one process. Paper: ~100 Hz on a V100 (224 px).")
    print("\n".join(" | ".join(r) for r in rows))


if __name__ == "__main__":
    main()
