"""Stage 6: export the estimator (ONNX, TFLite, CoreML), check parity against torch on the held-out set,
write the ``.swiftavatar`` bundle and verify it, and time every exported model.

The converters and runtimes (TensorFlow, LiteRT, onnx2tf, coremltools) write their own log lines to the
process's stdout and stderr; they go to ``RUN/export/stage.log`` (onnx2tf's own run to ``onnx2tf.log``),
so the terminal shows the build's progress and the report only findings about the run."""
from __future__ import annotations

from typing import Any

from ...errors import AvatarToolError
from ..runner import StageContext


def export_options(ctx: StageContext) -> Any:
    """The converters' :class:`~converters.export.ExportOptions` for this build's export section."""
    from converters.export import ExportOptions, parse_int8_float_layers
    from converters.formats import parse_targets
    from ...engines.bundle_engine import engine_record
    from ...render.folder import RenderFolder
    c = ctx.cfg.export
    # the bundle records how the render stage started the engine, so `predict --render` can start it again
    renders = RenderFolder.open(ctx.output("render")["folder"])
    return ExportOptions(targets=parse_targets(c.formats), int8_calibration=ctx.output("pairs")["dataset"],
                         calibration_count=c.calibration_images, min_calibration=min(c.calibration_images, 300),
                         eval_set=ctx.output("heldout")["set"], face_detector=c.face_detector,
                         fetch_face_detector=c.fetch_detector,
                         int8_float_layers=parse_int8_float_layers(c.int8_float_layers),
                         engine_spec=engine_record(renders.engine, renders.engine_cwd, renders.engine_name))


def run(ctx: StageContext) -> dict[str, Any]:
    from sdk_python.native_logs import redirect_native_output
    model_path = ctx.output("train")["model"]
    opts = export_options(ctx)
    steps = {"n": 0}

    def say(msg: str) -> None:
        steps["n"] += 1
        ctx.progress(steps["n"], None, msg)
    with redirect_native_output(ctx.log_path):
        return _export(ctx, model_path, opts, say)


def _export(ctx: StageContext, model_path: str, opts: Any, say: Any) -> dict[str, Any]:
    from converters.export import export_model
    from converters.latency import export_latency
    from sdk_python.bundle import open_bundle
    report = export_model(model_path, ctx.dir, opts, progress=say)
    for w in report.get("warnings", []):
        ctx.warn(w)   # includes each below-threshold model: "<format> <precision>: agreement … — left out of the bundle"
    for r in report["rows"]:
        if r["status"] in ("failed", "unvalidated"):
            ctx.warn(f"{r['format']} {r['precision']}: {r['status']}" + (f" — {r['reason']}" if r.get("reason") else ""))
        elif r["status"] == "not run here":
            ctx.warn(f"{r['format']} {r['precision']}: written but not run here ({r.get('reason') or 'no runtime'})")
    bundle = report.get("bundle")
    if not bundle:
        raise AvatarToolError("export wrote no bundle; see the parity table in " + str(ctx.dir / "parity.md"))
    say("verify bundle")
    with open_bundle(bundle) as b:
        checks = b.checks()
        records = {f"{m['format']}:{m['precision']}": m for m in b.manifest["models"]}
    bad = [c_ for c_ in checks if not c_.ok]
    if bad:
        raise AvatarToolError(f"{bundle} failed verification: " + "; ".join(f"{c_.name}: {c_.detail}" for c_ in bad))
    from ...atomic_io import atomic_write_json
    runs = int(ctx.cfg.export.latency_runs)
    if runs > 0:
        say("latency")
        # left-out (below-threshold) models are timed too, from the export's own records; their rows say so
        latency = export_latency(model_path, {"rows": report["rows"],
                                              "records": {**report.get("records", {}), **records}}, ctx.dir, runs=runs)
    else:
        latency = [{"format": "—", "precision": "—", "status": "", "note": "not timed (export.latency_runs = 0)"}]
    atomic_write_json(ctx.dir / "latency.json", {"rows": latency, "batch": 1, "threads": 2, "runs": runs})
    return {"bundle": str(bundle), "verified": len(checks), "passed": report["passed"], "parity": report["rows"],
            "latency": latency, "face_detector": report.get("face_detector", False),
            "files": ["parity.json", "parity.md", "latency.json", str(bundle)]}
