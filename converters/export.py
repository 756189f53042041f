"""Export a trained estimator to every requested format, measure parity, write the model bundle.

``export_model`` is what ``avatartool export`` calls::

    out/estimator.onnx  estimator_{fp32,fp16,dynamic_int8,int8}.tflite  estimator_{fp16,int8}.mlpackage
    out/parity.json  parity.md  <engine>.swiftavatar

The parity gate: every model is compared with torch on the evaluation set (``eval_set``; export refuses
without one unless ``no_parity``) and gets a status (:mod:`converters.parity`: ``validated``, ``below
threshold``, ``not run here``, ``unvalidated``). A model below its threshold is written to ``out`` but
left out of the bundle unless ``keep_failed``; the SDK's ``auto`` precision only picks ``validated``
models.

Full-integer int8 (``tflite:int8``) calibrates on ``calibration_count`` images of ``int8_calibration``. With
``int8_float_layers="auto"`` (default) the model is then scored on up to ``int8_selection_count`` *other* images
of that source; when its *worst head* is below the int8 threshold + ``int8_selection_margin`` the fewest layers
whose rounding measurably does most damage stay float (:func:`converters.int8_quant.choose_float_layers`; benchmarks/results/int8_quality.md
has the study behind it). The held-out gate above then judges the result as for every other model.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sdk_python import contract
from sdk_python.contract import output_name
from toolchain.atomic_io import atomic_write_json, atomic_write_text
from toolchain.errors import AvatarToolError

from . import parity as P
from .formats import Target, coreml_predicts_here
from .images import labelled_vectors, load_images, normalise, pick_subset
from .metadata import build_metadata

MIN_CALIBRATION = 300
#: ``int8_float_layers`` values that name a way of choosing (anything else is a list of layer names)
INT8_FLOAT_LAYER_MODES = ("auto", "outputs", "none")


def parse_int8_float_layers(value: str, key: str = "int8_float_layers") -> str | list[str]:
    """``--int8-float-layers`` / ``export.int8_float_layers`` as given: a mode name, else a comma list of layer
    output tensor names. A near-miss of a mode name (``output``) is refused: as a layer name it would only fail
    after the conversion."""
    import difflib
    text = str(value).strip()
    if text in INT8_FLOAT_LAYER_MODES:
        return text
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise AvatarToolError(f"{key} {value!r}: give one of {', '.join(INT8_FLOAT_LAYER_MODES)} or a "
                              "comma list of layer output tensor names")
    near = difflib.get_close_matches(text, INT8_FLOAT_LAYER_MODES, n=1, cutoff=0.7)
    if near:
        raise AvatarToolError(f"{key}={value!r}: did you mean '{near[0]}'? (one of {', '.join(INT8_FLOAT_LAYER_MODES)}, "
                              "or a comma list of layer names)")
    return names


@dataclass
class ExportOptions:
    targets: list[Target]
    int8_calibration: str | Path | None = None
    calibration_count: int = MIN_CALIBRATION
    min_calibration: int = MIN_CALIBRATION
    eval_set: str | Path | None = None
    eval_count: int | None = None
    thresholds: dict[str, float] = field(default_factory=lambda: dict(contract.AGREEMENT_THRESHOLDS))
    continuous_thresholds: dict[str, dict[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in contract.CONTINUOUS_THRESHOLDS.items()})
    bundle: bool = True
    bundle_name: str | None = None
    face_detector: str | Path | None = None
    fetch_face_detector: bool = True
    head_order: list[str] | None = None      # tests: export ONNX outputs in another order
    keep_failed: bool = False                # bundle models below their parity threshold too (marked so)
    no_parity: bool = False                  # export without an evaluation set: every model "unvalidated"
    # Full-integer int8: which layers stay in float. "auto": none if plain int8 reaches the int8 threshold plus
    # ``int8_selection_margin`` on selection images (calibration-source images not used to calibrate), else the
    # smallest measured set (converters.int8_quant.choose_float_layers); "outputs": the same check, then only the
    # heads' logit layers are tried in float, no layer scan (the scan's own choice on the three alter builds measured,
    # at ~3 min of the smoke export); "none": plain int8; or a list of the layers' output tensor names.
    int8_float_layers: str | list[str] = "auto"
    int8_selection_count: int = 400
    int8_selection_margin: float = 0.01
    int8_max_float_layers: int = 16
    # How the build started its engine (toolchain.engines.bundle_engine.engine_record), recorded in the bundle so
    # `avatartool predict --render` can start it again; None: a built-in or plug-in engine of the model's engine name
    # is recorded when there is one, else nothing.
    engine_spec: dict[str, Any] | None = None


Progress = Callable[[str], None]


def _size(path: Path) -> int:
    from .coreml_export import dir_size
    return dir_size(path)


def export_model(model_path: str | Path, out_dir: str | Path, opts: ExportOptions,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Export, validate and bundle. Returns the report (also ``parity.json``); ``report["passed"]`` is False
    when any target failed or is below its parity threshold.

    Raises:
        AvatarToolError: bad options (e.g. int8 without enough calibration images, no ``eval_set`` without
            ``no_parity``) or an unreadable model.
    """
    from toolchain.estimator.io import load_estimator
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from toolchain.provenance import estimator_origin
    model, est_meta = load_estimator(model_path)
    meta = build_metadata(model, model_path)
    size = int(model.config.input_size)
    heads = list(model.head_names)
    names = [output_name(h) for h in heads]
    targets = opts.targets
    warns: list[str] = []

    calib_u8, calib_desc, sel_u8, sel_disjoint = None, None, None, False
    if any(t.precision in t.spec.needs_calibration for t in targets):
        if opts.int8_calibration is None:
            raise AvatarToolError("TFLite int8 needs calibration images: pass --int8-calibration DATASET (a paired "
                                  f"dataset or evaluation set with >= {opts.min_calibration} images), or drop tflite:int8")
        if not (opts.int8_float_layers in INT8_FLOAT_LAYER_MODES or isinstance(opts.int8_float_layers, (list, tuple))):
            raise AvatarToolError(f"int8_float_layers {opts.int8_float_layers!r}: give one of "
                                  f"{', '.join(INT8_FLOAT_LAYER_MODES)} or a list of layer output tensor names")
        all_u8, all_desc = load_images(opts.int8_calibration, size)
        calib_u8, sel_u8, calib_desc, sel_disjoint = split_calibration(all_u8, all_desc, opts.calibration_count,
                                                         opts.int8_selection_count)
        if len(calib_u8) < opts.min_calibration:
            raise AvatarToolError(f"--int8-calibration {opts.int8_calibration} has {len(calib_u8)} images; int8 "
                                  f"calibration needs at least {opts.min_calibration}")
    if opts.eval_set is None and not opts.no_parity:
        raise AvatarToolError("no evaluation set: parity with torch cannot be measured, so no model could be validated. "
                              "Pass --eval-set DIR (held-out images), or --no-parity to export every model marked "
                              "'unvalidated'")
    if opts.eval_set is not None and opts.no_parity:
        raise AvatarToolError("--no-parity and --eval-set contradict each other: drop one")
    eval_u8, eval_desc = None, None
    if opts.eval_set is not None:
        eval_u8, eval_desc = load_images(opts.eval_set, size, limit=opts.eval_count)
    else:
        warns.append("--no-parity: no model was compared with torch; every model is 'unvalidated'")

    rows: dict[str, P.ParityRow] = {t.key: P.ParityRow(t.format, t.precision, t.filename) for t in targets}
    records: dict[str, dict[str, Any]] = {}
    ref = None
    x_eval = None
    if eval_u8 is not None:
        x_eval = normalise(eval_u8, model.config.mean, model.config.std)
        ref = P.torch_reference(model, x_eval)

    def fail(t: Target, exc: BaseException) -> None:
        rows[t.key].status = P.FAILED
        rows[t.key].reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if not isinstance(exc, AvatarToolError):
            rows[t.key].reason += " (" + traceback.format_exc(limit=1).strip().splitlines()[-1][:200] + ")"

    def check(t: Target, got: dict[str, np.ndarray]) -> None:
        P.compare(rows[t.key], ref, got, meta["outputs"], opts.thresholds, opts.continuous_thresholds)

    for t in [t for t in targets if t.format == "torch"]:
        say("torch.export")
        from .torch_export import export_torch, run_exported
        try:
            records[t.key] = export_torch(model, out / t.filename, meta)
            rows[t.key].size_bytes = _size(out / t.filename)
            if ref is not None:
                check(t, P.run_batched(run_exported(out / t.filename, records[t.key]), x_eval, 64))
        except Exception as exc:  # noqa: BLE001 - reported per target
            fail(t, exc)

    # ONNX: a target itself, and the input of onnx2tf
    onnx_path = out / contract.row("onnx", "fp32").file
    onnx_ok = False
    tfl = [t for t in targets if t.format == "tflite"]
    if any(t.format == "onnx" for t in targets) or tfl:
        say("onnx")
        from .onnx_export import export_onnx, onnx_session, run_onnx
        try:
            rec = export_onnx(model, onnx_path, meta, head_order=opts.head_order)
            onnx_ok = True
            records["onnx:fp32"] = {"input_layout": "NCHW", "output_map": {n: n for n in rec["outputs"]},
                                    "quantization": None, "opset": rec["opset"], "checker": rec["checker"]}
            if not any(t.format == "onnx" for t in targets):
                warns.append(f"{onnx_path.name} written as the input of TFLite conversion")
            t = Target("onnx", "fp32")
            if t.key in rows:
                rows[t.key].size_bytes = _size(onnx_path)
                if ref is not None:
                    sess = onnx_session(onnx_path)
                    check(t, P.run_batched(lambda x: run_onnx(sess, x), x_eval, 64))
        except Exception as exc:  # noqa: BLE001 - reported per target
            for t in [t for t in targets if t.format in ("onnx", "tflite")]:
                fail(t, exc)

    if tfl and onnx_ok:
        from .tflite_export import TFLiteRunner, finish_tflite, nchw_to_nhwc, run_onnx2tf
        say("tflite (onnx2tf): " + ", ".join(t.precision for t in tfl))
        calib = None if calib_u8 is None else calib_u8.astype(np.float32) / 255.0
        work = tempfile.TemporaryDirectory(prefix="swiftavatar-int8-")
        saved_model = Path(work.name) / "saved_model" if calib is not None and opts.int8_float_layers != "none" else None
        int8_choice: dict[str, Any] | None = None
        try:
            onnx_names = _onnx_names(onnx_path)   # one read of the file (weights included) for every TFLite reader
            produced = run_onnx2tf(onnx_path, out, [t.precision for t in tfl], model.config.mean, model.config.std,
                                   calibration=calib, log_path=out / "onnx2tf.log", saved_model_to=saved_model)
        except Exception as exc:  # noqa: BLE001
            produced = {}
            for t in tfl:
                fail(t, exc)
        if "int8" in produced and saved_model is not None:
            try:
                int8_choice = _int8_float_layers(model, meta, produced["int8"], saved_model, calib, sel_u8,
                                                 sel_disjoint, opts, Path(work.name), say, onnx_names)
            except Exception as exc:  # noqa: BLE001 - only the int8 model is lost
                fail(Target("tflite", "int8"), exc)
                del produced["int8"]
        work.cleanup()
        for t in tfl:
            if t.precision not in produced:
                continue
            try:
                rec = finish_tflite(produced[t.precision], meta, onnx_names, t.precision,
                                    (int8_choice or {}).get("float_layers", []) if t.precision == "int8" else ())
                if t.precision == "int8":
                    rec["quantization"]["calibration"] = {"images": int(len(calib_u8)), "source": calib_desc,
                                                          "normalisation": "(x/255 - mean) / std, as at inference"}
                    if int8_choice is not None:
                        rec["quantization"]["float_layers_choice"] = int8_choice
                records[t.key] = rec
                rows[t.key].size_bytes = _size(produced[t.precision])
                if ref is not None:
                    runner = TFLiteRunner(produced[t.precision], rec["output_map"])
                    got = P.run_batched(lambda x: runner(nchw_to_nhwc(x)), x_eval, 16)
                    check(t, got)
            except Exception as exc:  # noqa: BLE001
                fail(t, exc)

    for t in [t for t in targets if t.format == "coreml"]:
        say(f"coreml {t.precision}")
        from .coreml_export import export_coreml, predict_coreml, validate_coreml_spec
        path = out / t.filename
        try:
            rec = export_coreml(model, path, meta, t.precision)
            rec["spec"] = validate_coreml_spec(path, names, size)
            records[t.key] = rec
            rows[t.key].size_bytes = _size(path)
            if eval_u8 is None:
                rows[t.key].reason = "spec validated; not compared (--no-parity)"
            elif coreml_predicts_here():  # pragma: no cover - macOS
                preds = predict_coreml(path, eval_u8)
                got = {n: np.concatenate([np.asarray(p[n], np.float32).reshape(1, -1) for p in preds]) for n in names}
                check(t, got)
            else:
                rows[t.key].status = P.NOT_RUN
                rows[t.key].reason = "spec validated; prediction runs on macOS only"
        except Exception as exc:  # noqa: BLE001
            fail(t, exc)

    calibration: dict[str, Any] = {"skipped": "no evaluation set (--no-parity)"}
    if ref is not None:
        from .calibration import calibrate, markdown as calibration_markdown
        vectors = labelled_vectors(opts.eval_set, limit=opts.eval_count)
        calibration = (calibrate(ref, vectors, meta["schema"]) if vectors is not None
                       else {"skipped": f"the evaluation set {opts.eval_set} has no labels"})
        atomic_write_text(out / "calibration.md", calibration_markdown(calibration, f"Confidence calibration: {meta['engine']}"))
    if "skipped" in calibration:
        warns.append(f"confidences not calibrated: {calibration['skipped']}")

    row_list = [rows[t.key] for t in targets]
    for r in row_list:
        if eval_u8 is None and r.status == P.UNVALIDATED and not r.reason:
            r.reason = "not compared (--no-parity)"
    if opts.bundle:
        for t, r in zip(targets, row_list):
            r.bundled = r.status != P.FAILED and t.key in records and (r.status != P.BELOW or opts.keep_failed)
            if r.status == P.BELOW:
                warns.append(f"{t.format} {t.precision}: {r.reason} — "
                             + ("KEPT in the bundle (--keep-failed); the SDK's auto precision will not pick it"
                                if opts.keep_failed else "left out of the bundle (pass --keep-failed to keep it)"))
    report: dict[str, Any] = {
        "model": str(model_path), "engine": meta["engine"], "input_size": size, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "eval_images": eval_desc, "calibration": calib_desc, "thresholds": opts.thresholds,
        "rows": [r.to_json() for r in row_list], "warnings": warns, "confidence_calibration": calibration,
        "passed": all(r.status in (P.VALIDATED, P.NOT_RUN, P.UNVALIDATED) for r in row_list),
        "records": records,
    }
    notes = (f"Evaluation images: {eval_desc or 'none'}. Every discrete head must reach its precision's argmax "
             f"agreement with torch on its own (thresholds {opts.thresholds}); the worst head is shown, the agreement "
             "pooled over all heads only for reference. Continuous errors on the [0, 1] normalised outputs (clipped as "
             "decoded), i.e. in units of each parameter's range: each parameter's mean error and the largest single "
             f"error are gated ({opts.continuous_thresholds}). A model below a threshold is left out of the bundle "
             "unless --keep-failed; the SDK's auto precision picks only validated models.")
    atomic_write_json(out / "parity.json", report)
    atomic_write_text(out / "parity.md", P.markdown(row_list, f"Export parity: {meta['engine']}", notes))

    if opts.bundle and not any(r.bundled for r in row_list):
        warns.append("no model passed the parity gate: bundle NOT written (see parity.md; --keep-failed bundles "
                     "models below their threshold)")
        atomic_write_json(out / "parity.json", report)
    elif opts.bundle:
        say("bundle")
        from .bundle_writer import now_iso, write_bundle, zip_directory
        from .face_detector import detector_name, find_face_detector
        members: dict[str, bytes] = {contract.SCHEMA_MEMBER: json.dumps(meta["schema"], indent=2).encode("utf-8")}
        models = []
        for t, r in zip(targets, row_list):
            if not r.bundled:
                continue
            path, member = out / t.filename, t.row.member
            members[member] = zip_directory(path) if t.row.is_folder else path.read_bytes()
            models.append({"format": t.format, "precision": t.precision, "file": member, **records[t.key],
                           "parity": r.to_json()})
        detectors: dict[str, dict[str, Any]] = {}
        for kind in contract.DETECTORS:
            try:
                det = find_face_detector(opts.face_detector if kind == "short" else None,
                                         allow_download=opts.fetch_face_detector, kind=kind)
            except AvatarToolError as exc:
                msg = f"bundle written WITHOUT the {contract.detector(kind).label} ({exc})"
                warns.append(msg)
                warnings.warn(msg, stacklevel=2)
                continue
            name = detector_name(kind)
            members[name] = det.path.read_bytes()
            members["LICENSES/" + name + ".txt"] = det.license_text.encode("utf-8")
            detectors[kind] = {"file": name, "source": det.source, "sha256": det.sha256,
                               "license": contract.DETECTOR_LICENSE, "license_file": "LICENSES/" + name + ".txt"}
        detector = detectors.get("short")
        manifest = {"created_by": meta["created_by"], "created": now_iso(), "engine": meta["engine"],
                    "schema": meta["schema"], "input": meta["input"], "outputs": meta["outputs"],
                    "models": models, "face_detector": detector, "face_detectors": detectors,
                    "parity": [r.to_json() for r in row_list],
                    "thresholds": opts.thresholds, "eval_images": eval_desc, "warnings": warns,
                    "confidence_calibration": calibration if "temperatures" in calibration else None,
                    "provenance": estimator_origin(model_path, est_meta)}
        engine_rec = opts.engine_spec or _default_engine_record(meta["engine"])
        if engine_rec is not None:
            manifest[contract.ENGINE_SPEC_FIELD] = engine_rec
        bundle_path = out / (opts.bundle_name or f"{meta['engine']}.swiftavatar")
        write_bundle(bundle_path, manifest, members)
        if engine_rec is not None:
            from toolchain.engines.bundle_engine import remember_engine
            remember_engine(engine_rec)   # a build here ran this command: bundles it writes may start it again
        report["bundle"] = str(bundle_path)
        report["face_detector"] = detector is not None
        atomic_write_json(out / "parity.json", report)
    return report


def split_calibration(images: np.ndarray, desc: str, count: int,
                      selection: int) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """Calibration images (``count``, the fixed subset :func:`converters.images.load_images` picks) and up to
    ``selection`` *other* images of the same source, evenly spread, for choosing float layers. When the source has
    no others, the selection images are the calibration images (the last value, ``disjoint``, is then False)."""
    idx = pick_subset(len(images), count, 0)
    rest = np.setdiff1d(np.arange(len(images)), idx)
    if len(rest) == 0:
        sel = idx[np.linspace(0, len(idx) - 1, min(selection, len(idx))).astype(int)] if len(idx) else idx
    else:
        sel = rest[np.linspace(0, len(rest) - 1, min(selection, len(rest))).astype(int)]
    m = re.match(r"^(.*) \((\d+) of (\d+)\)$", desc)
    base = m.group(1) if m else desc
    return images[idx], images[sel], f"{base} ({len(idx)} of {len(images)})", bool(len(rest))


def _int8_float_layers(model, meta: dict[str, Any], int8_path: Path, saved_model: Path, calib: np.ndarray,
                       sel_u8: np.ndarray, sel_disjoint: bool, opts: ExportOptions, work: Path,
                       say: Progress, onnx_outputs: list[str]) -> dict[str, Any]:
    """Decide which layers of the full-integer model stay float (``opts.int8_float_layers``); rewrite
    ``int8_path`` when any do. ``onnx_outputs``: the converted ONNX file's output names in its order, by which
    the candidates' outputs are read. Returns the record that goes into the model's quantization entry."""
    from .int8_quant import Int8Quantizer, choose_float_layers, compute_layers, output_tensor_names, tflite_scorer
    target = opts.thresholds.get("int8", contract.AGREEMENT_THRESHOLDS["int8"]) + opts.int8_selection_margin
    x_sel = normalise(sel_u8, model.config.mean, model.config.std)
    score = tflite_scorer(x_sel, P.torch_reference(model, x_sel), meta["outputs"], work, onnx_outputs=onnx_outputs)
    selection = {"images": int(len(sel_u8)), "disjoint_from_calibration": sel_disjoint, "target": round(target, 6),
                 "objective": "the worst discrete head's argmax agreement (the parity gate judges each head)"}
    if isinstance(opts.int8_float_layers, (list, tuple)):
        q = Int8Quantizer(saved_model, calib, model.config.mean, model.config.std)
        known = {e.tensor for e in q.layer_errors()}
        unknown = [n for n in opts.int8_float_layers if n not in known]
        if unknown:
            raise AvatarToolError(f"--int8-float-layers: no layer named {unknown} in this model (names are recorded "
                                  "under quantization.float_layers_choice.ranking of an 'auto' export)")
        data = q.quantize(list(opts.int8_float_layers))
        s = score(data)
        _write_atomic(int8_path, data)
        return {"mode": "given", "float_layers": list(opts.int8_float_layers), "selection": selection,
                "agreement": s.agreement, "score": s.to_json(), "why": "layers given by the caller"}
    plain = score(int8_path.read_bytes())
    if plain.agreement >= target:
        return {"mode": opts.int8_float_layers, "float_layers": [], "selection": selection, "agreement": plain.agreement,
                "score": plain.to_json(),
                "why": f"plain int8's worst head ({plain.worst_head}) reaches {plain.agreement:.4f} >= {target:.4f} "
                       "on the selection images"}
    say(f"int8: worst head {plain.worst_head} {plain.agreement:.4f} < {target:.4f} on {len(sel_u8)} selection images; "
        "measuring which layers to keep float")
    q = Int8Quantizer(saved_model, calib, model.config.mean, model.config.std)
    candidates = compute_layers(q.layer_errors())
    outputs = [n for n in output_tensor_names(int8_path.read_bytes()) if n in candidates]
    mode = opts.int8_float_layers
    if mode == "outputs":   # an empty ranking: the logit set is the only one tried
        res = choose_float_layers(q.quantize, score, target, len(outputs), say, ranking=[], first_try=outputs)
        res["why"] += " (int8_float_layers=outputs: only the heads' logit layers tried, no layer scan)"
    else:
        res = choose_float_layers(q.quantize, score, target, opts.int8_max_float_layers, say, candidates=candidates,
                                  first_try=outputs)
    data = res.pop("model")
    if res["float_layers"]:
        _write_atomic(int8_path, data)
    res["ranked_layers"] = len(res["ranking"])
    res["ranking"] = res["ranking"][:opts.int8_max_float_layers]  # the rest never stay float
    return {"mode": mode, "selection": selection, "onnx2tf_agreement": plain.agreement, **res}


def _default_engine_record(engine: str) -> dict[str, Any] | None:
    """The engine record of a built-in or installed plug-in engine named ``engine``; None for any other name (an
    external command cannot be guessed from its name)."""
    from toolchain.engines.bundle_engine import engine_record
    from toolchain.engines.registry import list_engines
    if engine in {name for name, _ in list_engines()}:
        return engine_record(engine)
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _onnx_names(path: Path) -> list[str]:
    import onnx
    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
