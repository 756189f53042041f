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
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import RESULTS, machine_info

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
    ap.add_argument("--render-only", help="re-write the report from an int8_quality.json (no measuring)")
    ap.add_argument("--run", help="a finished build run (train/estimator.pt, pairs/, heldout/set)")
    ap.add_argument("--work", default="/tmp/int8_study", help="scratch folder (ONNX, saved model, variants)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--ks", default="1,2,4,8,16", help="numbers of worst layers kept in float")
    args = ap.parse_args(argv)
    if args.render_only:
        src = Path(args.render_only)
        render(json.loads(src.read_text()), Path(args.out) if args.out != str(RESULTS) else src.parent)
        return 0
    if not args.run:
        ap.error("--run is required")
    machine = machine_info(("numpy", "torch", "tensorflow", "onnx2tf", "ai-edge-litert"))

    from converters import parity as P
    from converters.images import load_images, normalise
    from converters.int8_quant import (Int8Quantizer, choose_float_layers, compute_layers, float_op_count, output_tensor_names,
                                       rank_layers, tflite_scorer)
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
    # the exporter's subset rule (converters.images.pick_subset, seed 0) decides which images calibrate at count N
    from converters.images import pick_subset

    def subset(n: int) -> np.ndarray:
        return pick_subset(n_pairs, n, 0)

    # selection images: what the exporter uses to choose float layers (paired images outside the calibration subset)
    from converters.export import ExportOptions, split_calibration
    _, sel_u8, _, _ = split_calibration(pairs_u8, pairs_desc, 300, 400)
    x_sel = normalise(sel_u8, mean, std)
    ref_sel = P.torch_reference(model, x_sel)
    sel_idx = sel_u8

    onnx_path = work / "estimator.onnx"
    export_onnx(model, onnx_path, meta)
    sm = work / "saved_model"
    t0 = time.time()
    calib300 = pairs_u8[subset(300)].astype(np.float32) / 255.0
    produced = run_onnx2tf(onnx_path, work / "onnx2tf", ["fp32", "int8"], mean, std, calibration=calib300,
                           log_path=work / "onnx2tf.log", saved_model_to=sm)
    print(f"onnx2tf: {time.time() - t0:.0f} s", flush=True)

    rows: list[dict[str, Any]] = []
    eval_outputs: dict[str, dict[str, np.ndarray]] = {}

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
                eval_outputs[label] = got
        data = path.read_bytes()
        r = {"variant": label, "calibration_images": calib_n, "quant_type": quant, "float_layers": float_layers,
             "size_bytes": len(data), "ops": float_op_count(data), "latency_p50_ms_2threads": _latency_p50(path, size),
             **res, **(extra or {})}
        rows.append(r)
        h = r["heldout"]
        print(f"{label:55s} heldout {h['agreement']:.4f} ({h['disagreements']}/{h['decisions']}) worst {h['worst_head']} "
              f"{h['worst_head_agreement']:.3f} | selection {r['selection']['agreement']:.4f} | "
              f"{len(data) / 1e6:.2f} MB {r['latency_p50_ms_2threads']:.2f} ms", flush=True)
        (work / "rows.json").write_text(json.dumps(rows, indent=1))
        return r

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

    # selective float, exporter default calibration (300). (a) rank by the debugger's per-layer error
    q = quantizers[(300, True)]
    t0 = time.time()
    errors = q.layer_errors()
    print(f"layer errors ({len(errors)} layers): {time.time() - t0:.0f} s", flush=True)
    ks = [int(v) for v in args.ks.split(",")]
    for k in ks:
        variant(q, f"300, {k} worst layers by debugger rmse/scale float", [e.tensor for e in errors[:k]], 300)
    # (b) rank by measured sensitivity: each weight layer alone in float, softmax KL vs torch on the selection images
    t0 = time.time()
    score = tflite_scorer(x_sel, ref_sel, meta["outputs"], work)
    ranking = rank_layers(q.quantize, score, compute_layers(errors), progress=lambda m: print(m, flush=True))
    scan_s = time.time() - t0
    print(f"sensitivity scan ({len(ranking)} layers): {scan_s:.0f} s", flush=True)
    for r in ranking[:10]:
        print(f"  kl {r['kl']:.2e} agreement {r['agreement']:.4f}  {r['layer'][:80]}", flush=True)
    for k in ks:
        variant(q, f"300, {k} most sensitive layers float (measured)", [r["layer"] for r in ranking[:k]], 300)
    outputs_fc = [t for t in output_tensor_names(q.quantize()) if t in set(compute_layers(errors))]
    variant(q, f"300, the {len(outputs_fc)} output (logit) layers float", outputs_fc, 300)
    # the exporter's own choice (threshold + its selection margin, on the selection images)
    opts = ExportOptions(targets=[])
    auto = choose_float_layers(q.quantize, score, threshold + opts.int8_selection_margin, opts.int8_max_float_layers,
                               ranking=ranking)
    auto.pop("model")
    variant(q, f"300, exporter auto choice ({len(auto['float_layers'])} float)", auto["float_layers"], 300)
    for n in (1000, n_pairs):
        qn = quantizers[(n, True)]
        variant(qn, f"{n}, the {len(outputs_fc)} output (logit) layers float", outputs_fc, n)

    # near ties: how close were torch's own top-2 for the decisions int8 flips?
    ties = {}
    for label in ("onnx2tf -oiqt (the exporter today)", f"300, exporter auto choice ({len(auto['float_layers'])} float)"):
        got = eval_outputs[label]
        m_all, m_dis = [], []
        for n in names:
            m = _margins(ref_eval[n])
            m_all.append(m)
            m_dis.append(m[ref_eval[n].argmax(1) != got[n].argmax(1)])
        m_all, m_dis = np.concatenate(m_all), np.concatenate(m_dis)
        ties[label] = {"disagreements": int(len(m_dis)),
                       "torch_top2_prob_gap_of_flipped": sorted(round(float(v), 4) for v in m_dis),
                       "torch_top2_prob_gap_all": {"median": float(np.median(m_all)), "p05": float(np.quantile(m_all, 0.05)),
                                                   "p10": float(np.quantile(m_all, 0.10))},
                       "decisions_with_gap_at_most_max_flipped": int((m_all <= (m_dis.max() if len(m_dis) else 0)).sum())}
    best = max(rows[1:], key=lambda r: r["heldout"]["agreement"])

    data = {"run": str(run), "eval_images": eval_desc, "pairs": pairs_desc, "threshold": threshold,
            "selection_images": int(len(sel_idx)), "rows": rows, "layer_errors": [e.to_json() for e in errors],
            "best_heldout": best["variant"], "near_ties": ties,
            "sensitivity_ranking": ranking, "output_layers": outputs_fc, "sensitivity_scan_seconds": scan_s, "exporter_auto_choice": auto, "command": "python -m benchmarks.int8_study " + shlex.join(argv or sys.argv[1:])}
    data["machine"] = machine
    render(data, Path(args.out))
    return 0


def _ci95(p: float, n: int) -> float:
    return 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / n)


def render(data: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``int8_quality.json`` and ``.md`` from the measured ``data`` (also: ``--render-only JSON``)."""
    rows, thr = data["rows"], data["threshold"]
    headers = ["variant", "calibration images", "weights", "float layers", "held-out agreement (flips / decisions)",
               "worst head", "selection agreement", "size MB", "p50 ms (2 thr, batch 1)", "float / int8 ops"]
    table = []
    for r in rows:
        h = r["heldout"]
        table.append([r["variant"], r["calibration_images"] or "–", r["quant_type"], len(r["float_layers"]),
                      f"{h['agreement']:.4f} ({h['disagreements']}/{h['decisions']})" + (" ✓" if h["agreement"] >= thr else ""),
                      f"{h['worst_head']} {h['worst_head_agreement']:.3f}", f"{r['selection']['agreement']:.4f}",
                      f"{r['size_bytes'] / 1e6:.2f}", f"{r['latency_p50_ms_2threads']:.2f}",
                      f"{r['ops']['float']} / {r['ops']['int8']}"])
    by = {r["variant"]: r for r in rows}
    plain = by["onnx2tf -oiqt (the exporter today)"]
    n_dec = plain["heldout"]["decisions"]
    ci = _ci95(plain["heldout"]["agreement"], n_dec)
    errs = [e["rmse_over_scale"] for e in data["layer_errors"] if e["op"] in ("CONV_2D", "FULLY_CONNECTED")]
    rank = data["sensitivity_ranking"]
    top = rank[:8]
    out_layers = set(data["output_layers"])
    n_out_top = sum(1 for r in top if r["layer"] in out_layers)
    logit_rows = [r for r in rows if "output (logit) layers float" in r["variant"]]
    auto = data["exporter_auto_choice"]
    auto_row = next(r for r in rows if r["variant"].startswith("300, exporter auto choice"))
    ties = data["near_ties"]
    t_plain = ties[plain["variant"]]
    best = max(rows[1:], key=lambda r: (r["heldout"]["agreement"], -len(r["float_layers"])))
    cal = {r["calibration_images"]: r for r in rows
           if r["variant"].startswith("calibration ") and r["quant_type"] == "per-channel" and not r["float_layers"]}
    pt = next(r for r in rows if r["quant_type"] == "per-tensor")
    flips = [r["heldout"]["disagreements"] for r in cal.values()]
    spread = max(flips) - min(flips)
    lines = [
        f"Held-out = the run's photo-proxy evaluation set ({data['eval_images']}), the export gate's images: "
        f"{n_dec} discrete decisions (images × discrete heads); agreement = argmax agreement with torch, gate {thr}. "
        f"Selection = {data['selection_images']} paired images outside the 300-image calibration subset (what the "
        "exporter uses to choose float layers; for the 1000 / all-image calibration rows they are partly calibration "
        "images). Latency: LiteRT, 2 threads, batch 1, median of 40 on a shared, loaded 2-core machine (± ~1 ms noise). "
        "All int8 variants have float input/output; 'float / int8 ops' counts ops by output type (quantize/dequantize not counted).",
        "",
        "**Findings**",
        "",
        f"- *Noise floor.* One decision is {1 / n_dec:.4f} of the pooled figure; the 95 % binomial interval of the "
        f"plain int8 figure is ±{ci:.4f}. The plain model misses 98 % by "
        f"{max(0, round(thr * n_dec) - (n_dec - plain['heldout']['disagreements']))} decision(s).",
        "- *Calibration size* (per-channel, realistic paired images): "
        + ", ".join(f"{n} images → {r['heldout']['agreement']:.4f} ({r['heldout']['disagreements']} flips)"
                    for n, r in sorted(cal.items()))
        + (f". The spread ({spread} decisions) is inside the ±{ci * n_dec:.0f}-decision 95 % interval: calibration "
           "size alone is no reliable fix." if spread < ci * n_dec else f". The spread ({spread} decisions) exceeds "
           f"the ±{ci * n_dec:.0f}-decision 95 % interval."),
        f"- *Per-tensor* weights: {pt['heldout']['agreement']:.4f}, worst head {pt['heldout']['worst_head']} "
        f"{pt['heldout']['worst_head_agreement']:.3f} (per-channel {plain['heldout']['worst_head_agreement']:.3f}): per-channel stays.",
        f"- *Debugger per-layer error* (TFLite QuantizationDebugger, RMS error / quantization step, weight layers): "
        f"{min(errs):.2f}–{max(errs):.2f} (pure rounding is 1/√12 ≈ 0.29 step): no layer stands out. Keeping the k "
        "worst by this measure in float gives held-out "
        + ", ".join(f"{r['heldout']['agreement']:.4f} (k={len(r['float_layers'])}, {r['size_bytes'] / 1e6:.2f} MB)"
                    for r in rows if "debugger" in r["variant"]) + ".",
        f"- *Measured sensitivity* (each weight layer alone in float, softmax KL vs torch on the selection images, "
        f"{len(rank)} layers, {data['sensitivity_scan_seconds']:.0f} s here): {n_out_top} of the 8 most damaging "
        f"roundings are heads' output (logit) layers ({len(out_layers)} in the model)"
        + (": quantizing the logits to 8 bits rounds near-ties together. " if n_out_top else ". ")
        + "Keeping the k most sensitive layers in float gives held-out "
        + ", ".join(f"{r['heldout']['agreement']:.4f} (k={len(r['float_layers'])}, {r['size_bytes'] / 1e6:.2f} MB)"
                    for r in rows if "most sensitive" in r["variant"]) + ("; all "
        + f"{len(out_layers)} logit layers in float: "
        + ", ".join(f"{r['heldout']['agreement']:.4f} with {r['calibration_images']} calibration images" for r in logit_rows)
        + f" (+{(logit_rows[0]['size_bytes'] - plain['size_bytes']) / 1e6:.2f} MB)." if logit_rows else "."),
        f"- *Exporter auto choice* (`--int8-float-layers auto`, target {auto['target']:.3f} on the selection images): "
        f"{len(auto['float_layers'])} layer(s) float → selection {auto_row['selection']['agreement']:.4f}, held-out "
        f"{auto_row['heldout']['agreement']:.4f} ({auto_row['heldout']['disagreements']} flips), worst head "
        f"{auto_row['heldout']['worst_head']} {auto_row['heldout']['worst_head_agreement']:.3f}, "
        f"{auto_row['size_bytes'] / 1e6:.2f} MB. {auto['why']}.",
        f"- *Near ties.* The {t_plain['disagreements']} decisions plain int8 flips had torch top-2 probability gaps of "
        f"median {np.median(t_plain['torch_top2_prob_gap_of_flipped']) if t_plain['torch_top2_prob_gap_of_flipped'] else float('nan'):.3f}"
        f" (max {max(t_plain['torch_top2_prob_gap_of_flipped'] or [float('nan')]):.3f}); over all decisions the median gap "
        f"is {t_plain['torch_top2_prob_gap_all']['median']:.3f} and the 10th percentile "
        f"{t_plain['torch_top2_prob_gap_all']['p10']:.3f}: the flips are decisions torch itself makes by a hair, "
        "which any rounding of the logits can turn.",
        "",
        f"**Conclusion.** Best held-out figure: {best['heldout']['agreement']:.4f} ({best['variant']}); the exporter's "
        f"own measured choice (default `auto`, 300 calibration images): {auto_row['heldout']['agreement']:.4f} "
        + f"({auto_row['heldout']['disagreements']} flips; the gate allows {n_dec - math.ceil(thr * n_dec - 1e-9)}) "
        + ("— at or above the 98 % gate with the full-integer model, only the chosen layers in float."
           + (" The margin is within the noise interval above, so the exporter still gates every export on its "
              "held-out set." if n_dec - math.ceil(thr * n_dec - 1e-9) - auto_row["heldout"]["disagreements"] < ci * n_dec
              else "")
           if auto_row["heldout"]["agreement"] >= thr else "— below the 98 % gate."),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "int8_quality.json", out_dir / "int8_quality.md"
    json_path.write_text(json.dumps({"benchmark": "int8_quality", **data}, indent=1) + "\n")
    m = data["machine"]
    md = [f"# int8_quality", "", f"Machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, load average "
          f"{m['load_average_1m']} at start, {m['date']}; OMP_NUM_THREADS=1, one conversion at a time.", "",
          f"Run `{data['run']}`; command `{data['command']}` (re-render: `python -m benchmarks.int8_study --render-only "
          "benchmarks/results/int8_quality.json`).", "",
          "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(str(c) for c in r) + " |" for r in table]
    md += [""] + lines
    md_path.write_text("\n".join(md) + "\n")
    return json_path, md_path


if __name__ == "__main__":
    sys.exit(main())
