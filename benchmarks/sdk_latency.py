"""End-to-end SDK latency per backend and precision: detection, crop, inference, total (p50/p90/p99, Hz).

    python benchmarks/sdk_latency.py --model runs/<run>/export/estimator.onnx   # or a .swiftavatar
    python benchmarks/sdk_latency.py --model ... --runs 300 --threads 2

Every backend/precision the bundle and this machine support runs on the same photo (scikit-image's
astronaut, 512x512) with the same detector, beside the torch-eager figure from the same run. Writes
benchmarks/results/sdk_latency.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._report import write_report  # noqa: E402

PAPER_HZ = 100.0  # SwiftAvatar paper: "~100 Hz on a V100" (ResNet-18 estimator, GPU)


def pct(v, q):
    return float(np.percentile(v, q))


def bench(model: str, backend: str, precision: str, image: np.ndarray, runs: int, warmup: int, threads: int,
          detection: str = "mediapipe") -> dict:
    from sdk_python import AvatarEstimator
    with AvatarEstimator.create_from_bundle(model, backend=backend, precision=precision, num_threads=threads,
                                            detection=detection) as est:
        for _ in range(warmup):
            est.estimate(image, color_order="rgb")
        rows = []
        for _ in range(runs):
            t = est.estimate(image, color_order="rgb").timings
            rows.append((t.detection_ms, t.crop_ms, t.inference_ms, t.total_ms))
        vector = est.estimate(image, color_order="rgb").vector
        prec = est.backend.precision
    a = np.array(rows)
    out = {"backend": backend, "precision": prec, "detection": detection, "runs": runs, "vector": vector,
           "samples_ms": {"detection": a[:, 0].tolist(), "crop": a[:, 1].tolist(), "inference": a[:, 2].tolist(),
                          "total": a[:, 3].tolist()}}
    for i, k in enumerate(("detection", "crop", "inference", "total")):
        out[k] = {"p50": pct(a[:, i], 50), "p90": pct(a[:, i], 90), "p99": pct(a[:, i], 99)}
    out["hz_p50"] = 1000.0 / out["total"]["p50"]
    return out


_TORCH_ALONE = """
import sys, time, json, numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from toolchain.estimator.io import load_estimator
m, _ = load_estimator(sys.argv[1])
S = m.config.input_size
x = torch.randn(1, 3, S, S)
with torch.inference_mode():
    for _ in range(10):
        m(x)
    t = []
    for _ in range(int(sys.argv[3])):
        t0 = time.perf_counter(); m(x); t.append((time.perf_counter() - t0) * 1e3)
print(json.dumps(t))
"""


def torch_alone(pt: Path, threads: int, runs: int) -> list[float] | None:
    """torch eager inference in a process without mediapipe/tensorflow (they slow torch's CPU threads
    down badly when loaded in the same process)."""
    import json
    import subprocess
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _TORCH_ALONE, str(pt), str(threads), str(runs)], capture_output=True,
                          text=True, cwd=root, timeout=1800)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="bundle (.swiftavatar) or export folder / estimator.onnx")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from skimage import data
    image = data.astronaut()
    from sdk_python.backends import available_backends
    from sdk_python.model_source import open_model_source
    files = open_model_source(args.model).files
    combos = [("onnxruntime", "fp32"), ("litert", "fp32"), ("litert", "fp16"), ("litert", "int8"),
              ("coreml", "fp16"), ("torch", "fp32")]
    usable = set(available_backends())
    results, skipped = [], []
    for backend, prec in combos:
        if backend not in usable or files.for_backend(backend, prec) is None:
            skipped.append(f"{backend} {prec}: " + ("runtime not available here" if backend not in usable
                                                    else "no such model in the bundle"))
            continue
        print(f"{backend} {prec} ...", flush=True)
        results.append(bench(args.model, backend, prec, image, args.runs, args.warmup, args.threads))
    headers = ["backend", "precision", "detect p50", "crop p50", "infer p50/p90/p99", "total p50/p90/p99 ms", "Hz (p50)",
               "vs torch eager"]
    torch_total = next((r["total"]["p50"] for r in results if r["backend"] == "torch"), None)
    rows = []
    for r in results:
        i, t = r["inference"], r["total"]
        ratio = f"{torch_total / t['p50']:.1f}x" if torch_total else ""
        rows.append([r["backend"], r["precision"], f"{r['detection']['p50']:.2f}", f"{r['crop']['p50']:.2f}",
                     f"{i['p50']:.2f} / {i['p90']:.2f} / {i['p99']:.2f}",
                     f"{t['p50']:.2f} / {t['p90']:.2f} / {t['p99']:.2f}", f"{r['hz_p50']:.0f}", ratio])
    pt = files.for_backend("torch")
    alone = torch_alone(pt, args.threads, args.runs) if pt and "torch" in usable else None
    if alone:
        a = np.array(alone)
        rows.append(["torch eager, own process (inference only)", "fp32", "", "",
                     f"{pct(a, 50):.2f} / {pct(a, 90):.2f} / {pct(a, 99):.2f}", "", f"{1000 / pct(a, 50):.0f}", ""])
    rows.append(["paper: ResNet-18 on a V100 (GPU)", "fp32", "", "", "", f"{1000 / PAPER_HZ:.1f}", f"~{PAPER_HZ:.0f}", ""])
    notes = (f"End to end = decode input + MediaPipe BlazeFace short-range detection (two passes: whole image, then a "
             f"window around the face) + similarity-aligned crop + estimator + decode, on scikit-image's astronaut "
             f"(512x512), {args.threads} threads, {args.runs} timed runs after {args.warmup} warm-up. Model: {args.model}. "
             "Skipped: " + ("; ".join(skipped) or "none") + ".")
    notes += (" The torch rows in the SDK process run with mediapipe (and so tensorflow, which mediapipe imports when it "
              "is installed) loaded, which slows torch's CPU threads badly here; the 'own process' row is torch eager "
              "without them. The machine was shared with other jobs (load average above the core count): compare "
              "rows within this run only.")
    write_report("sdk_latency", {"config": vars(args), "results": results, "torch_alone_ms": alone, "skipped": skipped,
                                 "paper_reference_hz": PAPER_HZ}, headers, rows, notes)
    print("\n".join(" | ".join(map(str, r)) for r in rows))


if __name__ == "__main__":
    main()
