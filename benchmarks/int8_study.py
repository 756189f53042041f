"""Int8 quality study: which calibration, weight scales and float layers bring the full-integer TFLite
model to the 98 % agreement gate on the held-out photo proxy (issue 13, part 5).

    python -m benchmarks.int8_study --run runs/build-alter-smoke [--work /tmp/int8_study] [--out DIR]

Every variant is converted from the same onnx2tf saved model and compared with torch on the run's held-out
set (``heldout/set``, the export gate's images) and on paired-dataset images that were not used for its
calibration (the images an exporter may use to *choose* a variant without looking at the gate's set).
Writes ``<out>/int8_quality.json`` + ``.md``. One conversion at a time; OMP_NUM_THREADS=1 recommended.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import RESULTS, write_report

LAT_RUNS = 40


def _latency_p50(path: Path, size: int, threads: int = 2) -> float:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).standard_normal((1, size, size, 3)).astype(np.float32)
    times = []
    for i in range(LAT_RUNS + 5):
        it.set_tensor(inp["index"], x)
        t0 = time.perf_counter()
        it.invoke()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _margins(logits: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 softmax probability of each row."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    s = np.sort(p, 1)
    return s[:, -1] - s[:, -2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished build run (train/estimator.pt, pairs/, heldout/set)")
    ap.add_argument("--work", default="/tmp/int8_study", help="scratch folder (ONNX, saved model, variants)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--ks", default="1,2,4,8,16", help="numbers of worst layers kept in float")
    args = ap.parse_args(argv)

    from converters import parity as P
    from converters.images import load_images, normalise
    from converters.int8_quant import Int8Quantizer, float_op_count
    from converters.metadata import build_metadata
    from converters.onnx_export import export_onnx
    from converters.tflite_export import TFLiteRunner, interpreter_output_map, make_interpreter, nchw_to_nhwc, run_onnx2tf
    from sdk_python.contract import AGREEMENT_THRESHOLDS, output_name
    from toolchain.estimator.io import load_estimator

    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_path = run / "train" / "estimator.pt"
    model, _ = load_estimator(model_path)
    meta = build_metadata(model, model_path)
    size, mean, std = int(model.config.input_size), model.config.mean, model.config.std
    names = [output_name(h) for h in model.head_names]
    threshold = AGREEMENT_THRESHOLDS["int8"]

    pairs_u8, pairs_desc = load_images(run / "pairs", size)
    eval_u8, eval_desc = load_images(run / "heldout" / "set", size)
    x_eval = normalise(eval_u8, mean, std)
    ref_eval = P.torch_reference(model, x_eval)
    n_pairs = len(pairs_u8)
    # the exporter's subset rule (converters.images._pick, seed 0) decides which images calibrate at count N
    from converters.images import _pick

    def subset(n: int) -> np.ndarray:
        return _pick(n_pairs, n, 0)

    # selection images: paired images outside the 1000-image calibration subset (and the 300 one, which it holds?)
    rest = np.setdiff1d(np.arange(n_pairs), np.union1d(subset(1000), subset(300)))
    sel_idx = rest[np.linspace(0, len(rest) - 1, min(400, len(rest))).astype(int)]
    x_sel = normalise(pairs_u8[sel_idx], mean, std)
    ref_sel = P.torch_reference(model, x_sel)

    onnx_path = work / "estimator.onnx"
    export_onnx(model, onnx_path, meta)
    sm = work / "saved_model"
    t0 = time.time()
    calib300 = pairs_u8[subset(300)].astype(np.float32) / 255.0
    produced = run_onnx2tf(onnx_path, work / "onnx2tf", ["fp32", "int8"], mean, std, calibration=calib300,
                           log_path=work / "onnx2tf.log", saved_model_to=sm)
    print(f"onnx2tf: {time.time() - t0:.0f} s", flush=True)

    rows: list[dict[str, Any]] = []

    def measure(label: str, path: Path, calib_n: int, quant: str, float_layers: list[str], extra: dict | None = None):
        interp = make_interpreter(path)
        omap = interpreter_output_map(interp, names)
        runner = TFLiteRunner(path, omap)
        res = {}
        for split, x, ref in (("heldout", x_eval, ref_eval), ("selection", x_sel, ref_sel)):
            got = P.run_batched(lambda b: runner(nchw_to_nhwc(b)), x, 16)
            row = P.compare(P.ParityRow("tflite", "int8", path.name), ref, got, meta["outputs"])
            res[split] = {"agreement": row.agreement, "worst_head": row.worst_head,
                          "worst_head_agreement": row.worst_head_agreement, "per_head": row.per_head,
                          "disagreements": int(round((1 - row.agreement) * row.n_images * len(row.per_head))),
                          "decisions": row.n_images * len(row.per_head),
                          "logit_mean_abs_error": float(np.mean([np.abs(ref[n] - got[n]).mean() for n in names]))}
            if split == "heldout":
                res["_got_eval"] = got
        data = path.read_bytes()
        r = {"variant": label, "calibration_images": calib_n, "quant_type": quant, "float_layers": float_layers,
             "size_bytes": len(data), "ops": float_op_count(data), "latency_p50_ms_2threads": _latency_p50(path, size),
             **{k: v for k, v in res.items() if not k.startswith("_")}, **(extra or {})}
        rows.append(r)
        h = r["heldout"]
        print(f"{label:55s} heldout {h['agreement']:.4f} ({h['disagreements']}/{h['decisions']}) worst {h['worst_head']} "
              f"{h['worst_head_agreement']:.3f} | selection {r['selection']['agreement']:.4f} | "
              f"{len(data) / 1e6:.2f} MB {r['latency_p50_ms_2threads']:.2f} ms", flush=True)
        (work / "rows.json").write_text(json.dumps(rows, indent=1))
        return r, res["_got_eval"]

    measure("fp32 (reference)", produced["fp32"], 0, "-", [])
    measure("onnx2tf -oiqt (the exporter today)", produced["int8"], 300, "per-channel", [])

    def variant(q: Int8Quantizer, label: str, float_layers: list[str], calib_n: int, extra: dict | None = None):
        path = work / f"v{len(rows):02d}.tflite"
        path.write_bytes(q.quantize(float_layers))
        return measure(label, path, calib_n, "per-channel" if q.per_channel else "per-tensor", float_layers, extra)

    quantizers: dict[tuple[int, bool], Int8Quantizer] = {}
    for n in (300, 1000, n_pairs):
        t0 = time.time()
        calib = pairs_u8[subset(n)].astype(np.float32) / 255.0
        q = Int8Quantizer(sm, calib, mean, std, per_channel=True)
        print(f"calibrated on {n}: {time.time() - t0:.0f} s", flush=True)
        variant(q, f"calibration {n}", [], n)
        quantizers[(n, True)] = q
    q_pt = Int8Quantizer(sm, calib300, mean, std, per_channel=False)
    variant(q_pt, "calibration 300, per-tensor", [], 300)
    del q_pt

    # selective float: rank layers by quantization error on calibration images, keep the k worst in float
    best_n = max((r for r in rows if r["variant"].startswith("calibration") and r["quant_type"] == "per-channel"
                  and not r["float_layers"]), key=lambda r: (r["selection"]["agreement"], -r["calibration_images"]))
    best_n = best_n["calibration_images"]
    q = quantizers[(best_n, True)]
    t0 = time.time()
    errors = q.layer_errors()
    print(f"layer errors ({len(errors)} layers): {time.time() - t0:.0f} s", flush=True)
    for e in errors[:12]:
        print(f"  {e.rmse_over_scale:7.3f}  {e.op:20s} {e.tensor}", flush=True)
    got_by_k = {}
    for k in [int(v) for v in args.ks.split(",")]:
        if k > len(errors):
            break
        layers = [e.tensor for e in errors[:k]]
        _, got_by_k[k] = variant(q, f"calibration {best_n}, {k} worst layers float", layers, best_n)
    # the heads' classifier layers (FULLY_CONNECTED) in float, whatever their measured error
    fc = [e.tensor for e in errors if e.op == "FULLY_CONNECTED"]
    if fc:
        variant(q, f"calibration {best_n}, all {len(fc)} FULLY_CONNECTED float", fc, best_n)

    # near ties: how close were torch's own top-2 for the images int8 disagrees on?
    best = max(rows[1:], key=lambda r: r["heldout"]["agreement"])
    ties = {}
    ref_int8 = None
    for r in rows:
        if r["variant"] == "onnx2tf -oiqt (the exporter today)":
            ref_int8 = r
    margins_all, margins_dis = [], []
    got = P.run_batched(lambda b: TFLiteRunner(produced["int8"], interpreter_output_map(make_interpreter(produced["int8"]), names))(nchw_to_nhwc(b)), x_eval, 16)
    for n in names:
        m = _margins(ref_eval[n])
        dis = ref_eval[n].argmax(1) != got[n].argmax(1)
        margins_all.append(m)
        margins_dis.append(m[dis])
    m_all, m_dis = np.concatenate(margins_all), np.concatenate(margins_dis)
    ties = {"variant": ref_int8["variant"] if ref_int8 else None, "disagreements": int(len(m_dis)),
            "torch_margin_of_disagreements": {"median": float(np.median(m_dis)) if len(m_dis) else None,
                                              "max": float(m_dis.max()) if len(m_dis) else None},
            "torch_margin_all": {"median": float(np.median(m_all)), "p05": float(np.quantile(m_all, 0.05))},
            "decisions_with_margin_below_max_disagreement": int((m_all <= (m_dis.max() if len(m_dis) else 0)).sum())}

    data = {"run": str(run), "eval_images": eval_desc, "pairs": pairs_desc, "threshold": threshold,
            "selection_images": int(len(sel_idx)), "rows": rows, "layer_errors": [e.to_json() for e in errors],
            "best_heldout": best["variant"], "near_ties": ties, "command": "python -m benchmarks.int8_study " + shlex.join(argv or sys.argv[1:])}
    headers = ["variant", "calibration images", "weights", "float layers", "held-out agreement (disagreements)",
               "worst head", "selection agreement", "size MB", "p50 ms (2 thr, batch 1)", "float / int8 ops"]
    table = []
    for r in rows:
        h = r["heldout"]
        table.append([r["variant"], r["calibration_images"] or "–", r["quant_type"], len(r["float_layers"]),
                      f"{h['agreement']:.4f} ({h['disagreements']}/{h['decisions']})",
                      f"{h['worst_head']} {h['worst_head_agreement']:.3f}", f"{r['selection']['agreement']:.4f}",
                      f"{r['size_bytes'] / 1e6:.2f}", f"{r['latency_p50_ms_2threads']:.2f}",
                      f"{r['ops']['float']} / {r['ops']['int8']}"])
    write_report("int8_quality", data, headers, table, notes="", out_dir=Path(args.out),
                 stamp=f"Run `{run}`; command `{data['command']}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
