"""``avatartool``: the command line. A thin layer: every command calls a library function."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sdk_python import contract
from sdk_python.errors import AvatarSDKError

from ..errors import AvatarToolError
from ..pipeline.config import DEFAULT_EXPORT_FORMATS
from ..production.strengths import PAPER_STRENGTHS_TEXT
from ..schema import ContinuousParam, SchemaError, VectorError
from .engine_options import (DEFAULT_BATCH_SIZE, DEFAULT_ENGINE_TIMEOUT_S, DEFAULT_WORKERS, BatchSize, BatchSizeOverride,
                             EngineTimeout, EngineTimeoutOverride, Workers, WorkersOverride, engine_options)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="SwiftAvatar toolchain: engines, data production, estimator training and export.")
engines_app = typer.Typer(no_args_is_help=True, help="List and inspect avatar engines.")
app.add_typer(engines_app, name="engines")
bundle_app = typer.Typer(no_args_is_help=True, help="Inspect and verify .swiftavatar model bundles.")
app.add_typer(bundle_app, name="bundle")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors, and the "
                                    "TensorFlow / MediaPipe / LiteRT logs that are hidden otherwise.")) -> None:
    _state["debug"] = debug


def make_progress() -> Progress:
    """A rich progress display (hidden on torchrun ranks other than 0: one display per job)."""
    from ..distributed import detect
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=False, disable=not detect().is_main)


@engines_app.command("list")
def engines_list() -> None:
    """List the engines avatartool can find."""
    from ..engines.registry import list_engines
    table = Table("engine", "source")
    for name, where in list_engines():
        table.add_row(name, where)
    console.print(table)
    console.print("Also accepted: 'package.module:Class' and 'cmd:<command>' (see docs/engine-protocol.md).")


@engines_app.command("show")
def engines_show(name: str = typer.Argument(..., help="Engine name or spec."),
                 options: bool = typer.Option(False, "--options",
                                              help="Every option of every parameter, one row each."),
                 as_json: bool = typer.Option(False, "--json", help="Print the schema as JSON.")) -> None:
    """Show an engine's parameters: one line each (kind, option count or range, default, first options)."""
    from ..engines.describe import compact_lines, option_rows
    from ..engines.registry import create_engine
    with create_engine(name) as engine:
        schema = engine.schema
    if as_json:
        print(schema.dumps())
        return
    n_disc = sum(p.kind == "discrete" for p in schema.params)
    console.print(f"engine '{escape(schema.engine)}': {len(schema.params)} parameters ({n_disc} discrete, "
                  f"{len(schema.params) - n_disc} continuous)", highlight=False)
    if options:
        table = Table("parameter", "#", "option", "note")
        for row in option_rows(schema):
            table.add_row(*(escape(c) for c in row))
        console.print(table)
        return
    for line in compact_lines(schema, width=max(40, console.width)):
        console.print(escape(line), highlight=False, soft_wrap=True)
    console.print(f"mask parts: {escape(', '.join(schema.parts)) or 'none'}", highlight=False)
    console.print("all options: --options; the schema as JSON: --json", highlight=False)


@app.command()
def render(
    engine: Optional[str] = typer.Option(None, "--engine", "-e", help="Engine name, 'module:Class' or 'cmd:<command>'."),
    n: Optional[int] = typer.Option(None, "-n", help="How many avatar vectors to sample and render (default 64)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed; the same seed gives the same vectors."),
    size: int = typer.Option(256, "--size", help="Square image size in pixels."),
    out: Path = typer.Option(Path("renders"), "--out", "-o", help="Output folder (resumed if it exists)."),
    masks: bool = typer.Option(True, "--masks/--no-masks", help="Also write part masks when the engine has them."),
    vectors: Optional[str] = typer.Option(None, "--vectors", help="Render these vectors instead of sampling: a "
                                          "JSON-lines file or '-' for stdin (plain vectors, vectors.jsonl lines, or "
                                          "`avatartool predict --json` output as it is)."),
    sweep_param: Optional[str] = typer.Option(None, "--sweep", help="Draw one parameter's options (or --steps values "
                                              "over its range) on a fixed base vector: each --vectors vector, else "
                                              "the schema's defaults; a contact sheet with one row per base."),
    steps: int = typer.Option(7, "--steps", help="--sweep of a continuous parameter: how many values."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="With --vectors / --sweep: render with the "
                                          "engine this bundle records (instead of --engine)."),
    trust_bundle_engine: bool = typer.Option(False, "--trust-bundle-engine", help="With --bundle: run the external "
                                             "command a bundle made on another machine records (printed first)."),
    workers: Workers = DEFAULT_WORKERS,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    engine_timeout: EngineTimeout = DEFAULT_ENGINE_TIMEOUT_S,
) -> None:
    """Sample avatar vectors and render them: PNGs, masks, vectors.jsonl and a contact sheet. With --vectors or
    --sweep: render the vectors you give instead (images/, vectors.jsonl, chosen.json, contact_sheet.png)."""
    if vectors is not None or sweep_param is not None:
        if n is not None:
            raise AvatarToolError("-n samples vectors; --vectors / --sweep render chosen ones: drop one")
        _render_chosen(_chosen_engine(engine, bundle, trust_bundle_engine, engine_timeout), vectors, sweep_param, steps,
                       size, out, batch_size, vectors or "")
        return
    if engine is None or bundle is not None:
        raise AvatarToolError("render samples vectors for --engine SPEC (--bundle only goes with --vectors / --sweep)")
    n = 64 if n is None else n
    from ..render.job import render_folder
    cfg = engine_options(workers, batch_size, engine_timeout).config(engine, n, seed=seed, size=size, masks=masks)
    with make_progress() as progress:
        task = progress.add_task(f"render {engine}", total=n)
        summary = render_folder(cfg, out, progress=lambda done, total: progress.update(task, completed=done),
                                on_restart=_print_restart)
    console.print(f"[green]done[/]: {summary.rendered} rendered, {summary.skipped} already there -> {out}/ "
                  f"(images/, {'masks/, ' if summary.has_masks else ''}vectors.jsonl, contact_sheet.png)")
    _print_restart_count(len(summary.restarts), out / "render.json")


def _chosen_engine(engine: Optional[str], bundle: Optional[Path], trust: bool, timeout_s: float):
    """The engine for chosen vectors: --engine SPEC, or the one --bundle records (--engine overrides it)."""
    from ..engines.registry import create_engine
    if bundle is None:
        if engine is None:
            raise AvatarToolError("name the engine: --engine SPEC, or --bundle FILE to use the engine a bundle records")
        return create_engine(engine, timeout_s=timeout_s)
    from sdk_python.bundle import BundleError, open_bundle

    from ..engines.bundle_engine import open_bundle_engine
    try:
        with open_bundle(bundle) as b:
            manifest = b.manifest
    except BundleError as exc:
        raise AvatarToolError(str(exc)) from None
    return open_bundle_engine(manifest, engine, trust, lambda msg: err_console.print(escape(msg), highlight=False),
                              timeout_s=timeout_s)


def _render_chosen(eng, vectors: Optional[str], sweep_param: Optional[str], steps: int, size: int,
                   out: Path, batch_size: int, source: str) -> None:
    from ..render.chosen import ChosenVector, read_vectors, render_chosen, sweep
    with eng:
        schema = eng.schema
        notes: list[str] = []
        items = (read_vectors(vectors, schema, notes=notes) if vectors is not None
                 else [ChosenVector("defaults", 0, schema.default_vector())])
        for note in notes:
            err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
        columns = 8
        if sweep_param is not None:
            bases = items
            items = [v for b in bases for v in sweep(schema, b.vector, sweep_param, steps,
                                                     b.label if len(bases) > 1 else "")]
            columns = len(items) // len(bases)
        with make_progress() as progress:
            task = progress.add_task(f"render {eng.name}", total=len(items))
            sheet = render_chosen(eng, items, out, size=size, batch_size=batch_size, source=source,
                                  columns=columns, progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"[green]done[/]: {len(items)} chosen vector(s) rendered -> {out}/ (images/, vectors.jsonl, "
                  f"chosen.json, {sheet.name})")


def _print_restart(restart: dict) -> None:
    from ..render.job import describe_restart
    err_console.print(f"[bold yellow]warning:[/] {escape(describe_restart(restart))}", highlight=False, soft_wrap=True)


def _print_restart_count(count: int, where: Path) -> None:
    if count:
        err_console.print(f"[bold yellow]note:[/] the engine crashed or hung and was restarted {count} time(s) during "
                          f"this run (each listed above and in {escape(str(where))} under 'engine_restarts'); every "
                          "image was rendered", highlight=False, soft_wrap=True)


def _train_progress(progress: Progress):
    tasks: dict[str, int] = {}

    def update(phase: str, done: int, total: int, info: dict | None = None) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total)
        desc = phase if not info else f"{phase} epoch {info.get('epoch')} loss {info.get('loss', 0):.3f}"
        progress.update(tasks[phase], completed=done, total=total, description=desc)
    return update


@app.command()
def train(
    data: list[Path] = typer.Option(..., "--data", "-d", help="Paired dataset folder(s)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (resumed if it holds a checkpoint)."),
    config: str = typer.Option("paper", "--config", help="Preset: paper, small or tiny."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the preset's epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the preset's batch size."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights",
                                                    help="ImageNet ResNet-18 weights (.pth or .safetensors)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
) -> None:
    """Train the avatar estimator on paired datasets."""
    from ..estimator.train import preset, train as run_train
    from .. import distributed
    cfg = preset(config, epochs=epochs, batch_size=batch_size)
    with distributed.process_group(device), make_progress() as progress:
        summary = run_train(data, out, cfg, backbone_weights=backbone_weights, device=device,
                            progress=_train_progress(progress))
    _print_train_summary(summary, out)


def _print_train_summary(summary: dict, out: Path) -> None:
    for w in summary.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {w}")
    val = summary.get("final", {}).get("val", {})
    if val.get("accuracy"):
        console.print("validation accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in val["accuracy"].items()))
    if val.get("mae"):
        console.print("validation MAE: " + ", ".join(f"{k} {v:.3f}" for k, v in val["mae"].items()))
    console.print(f"[green]done[/]: {out}/estimator.pt, stats.jsonl, run.json")


@app.command()
def baseline(
    engine: str = typer.Option(..., "--engine", "-e", help="Engine name or spec."),
    n: int = typer.Option(4000, "-n", help="How many renders to train on."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: renders/, dataset/, train/."),
    config: str = typer.Option("small", "--config", help="Training preset: paper, small or tiny."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the preset's epochs."),
    seed: int = typer.Option(0, "--seed", help="Render sampling seed."),
    render_size: int = typer.Option(256, "--render-size", help="Render size in pixels."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="ImageNet ResNet-18 weights."),
    workers: Workers = DEFAULT_WORKERS,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    engine_timeout: EngineTimeout = DEFAULT_ENGINE_TIMEOUT_S,
) -> None:
    """The paper's Baseline: render, build a paired dataset of renders, train the estimator on it."""
    from ..pipeline.baseline import run_baseline
    from ..estimator.train import preset
    cfg = preset(config, epochs=epochs)
    with make_progress() as progress:
        summary = run_baseline(engine, n, out, cfg, seed=seed, render_size=render_size, workers=workers,
                               batch_size=batch_size, engine_timeout=engine_timeout,
                               backbone_weights=backbone_weights, progress=_train_progress(progress))
    _print_train_summary(summary, out / "train")
    _print_restart_count(summary.get("render_restarts", 0), out / "renders" / "render.json")


@app.command("eval")
def eval_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="estimator.pt from train/baseline."),
    set_dir: Path = typer.Option(..., "--set", help="Evaluation set folder (images + labels.jsonl + set.json)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: <model dir>/eval-<set name>)."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="torchvision AlexNet weights for LPIPS."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Engine spec to render with (default: the set's)."),
) -> None:
    """Evaluate an estimator: per-parameter accuracy/MAE, render-space distance, picture grid."""
    from ..evaluation.evaluate import evaluate
    out = out or model.parent / f"eval-{set_dir.resolve().name}"
    with make_progress() as progress:
        task = progress.add_task("evaluate", total=None)
        report = evaluate(model, set_dir, out, lpips_weights=lpips_weights, engine=engine,
                          progress=lambda d, t: progress.update(task, completed=d, total=t))
    m = report["metrics"]
    table = Table("parameter", "metric", "value", title=f"{report['set_kind']} set, {report['n']} images")
    for k, v in m["accuracy"].items():
        table.add_row(k, "accuracy", f"{v:.3f}")
    for k, v in m["mae"].items():
        table.add_row(k, "MAE (share of range)", f"{v:.4f} ({m['normalised_mae'][k]:.1%})")
    if m.get("mean_accuracy") is not None:
        table.add_row("mean", "accuracy", f"{m['mean_accuracy']:.3f}")
    if m.get("mean_normalised_mae") is not None:
        table.add_row("mean", "MAE / range", f"{m['mean_normalised_mae']:.1%}")
    table.add_row("render distance", "masked L1", f"{m['render_distance']['masked_l1']['mean']:.4f}")
    console.print(table)
    console.print(f"[green]done[/]: {out}/eval.json, eval.md, grid.png")


@app.command()
def proxy(
    engine: str = typer.Option(..., "--engine", "-e", help="A built-in engine: alter or morph."),
    n: int = typer.Option(500, "-n", help="How many photo-proxy images to draw."),
    seed: int = typer.Option(0, "--seed", help="Set seed (its vectors never coincide with 'render --seed' ones)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumed if it exists)."),
    size: int = typer.Option(256, "--size", help="Square image size in pixels."),
    unlabelled: bool = typer.Option(False, "--unlabelled",
                                    help="Write images and masks only, no labels.jsonl (unlabelled 'real' photos for training)."),
) -> None:
    """Draw a photo-like proxy set: the engine's attributes in a photo-like style (held-out eval set, or --unlabelled)."""
    from ..proxy.eval_set import write_proxy_set
    role = "unlabelled" if unlabelled else "eval"
    with make_progress() as progress:
        task = progress.add_task(f"proxy {engine} ({role})", total=n)
        summary = write_proxy_set(engine, out, n=n, seed=seed, size=size, role=role,
                                  progress=lambda done, total: progress.update(task, completed=done))
    files = "images/, masks/, " + ("labels.jsonl, " if role == "eval" else "") + "set.json, contact_sheet.png"
    console.print(f"[green]done[/]: {summary.written} drawn, {summary.skipped} already there -> {out}/ ({files}); "
                  f"set_id {summary.set_id}")


@app.command()
def export(
    model: Path = typer.Option(..., "--model", "-m", help="estimator.pt from train/baseline."),
    formats: str = typer.Option(DEFAULT_EXPORT_FORMATS, "--formats", "-f",
                                help="Comma list of FORMAT or FORMAT:PRECISION (tflite int8 needs --int8-calibration). "
                                     + "; ".join(f"{f}: {', '.join(contract.precisions_of(f))}" for f in contract.formats())
                                     + "."),
    precisions: Optional[str] = typer.Option(None, "--precisions", help="Keep only these precisions for bare format names."),
    int8_calibration: Optional[Path] = typer.Option(None, "--int8-calibration",
                                                    help="Paired dataset / evaluation set / image folder (>= 300 images)."),
    calibration_images: int = typer.Option(300, "--calibration-images",
                                           help="How many calibration images to use (fewer than 300 only with a warning)."),
    eval_set: Optional[Path] = typer.Option(None, "--eval-set", help="Images for the parity table (evaluation set); "
                                            "required unless --no-parity."),
    no_parity: bool = typer.Option(False, "--no-parity", help="Export without an evaluation set: nothing is compared "
                                   "with torch and every model is marked 'unvalidated'."),
    keep_failed: bool = typer.Option(False, "--keep-failed", help="Keep models below their parity threshold in the "
                                     "bundle (marked 'below threshold'; the SDK's auto precision never picks them)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <model dir>/export)."),
    face_detector: Optional[Path] = typer.Option(None, "--face-detector",
                                                 help=f"MediaPipe {contract.detector('short').file} to bundle."),
    fetch_detector: bool = typer.Option(True, "--fetch-detector/--no-fetch-detector",
                                        help=f"Fetch the detector from the {contract.DETECTOR_WHEEL} wheel (pip download) if not cached."),
    bundle: bool = typer.Option(True, "--bundle/--no-bundle", help="Write <engine>.swiftavatar."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Record how to start the engine in the bundle (for "
                                         "`predict --render`): a built-in or plug-in name, 'package.module:Class' or "
                                         "'cmd:<command>' (run from the current folder). Default: the model's engine "
                                         "if it is built-in or an installed plug-in."),
    min_agreement_fp: float = typer.Option(contract.AGREEMENT_THRESHOLDS["fp32"], "--min-agreement-fp",
                                           help="Pass threshold for fp32/fp16."),
    min_agreement_int8: float = typer.Option(contract.AGREEMENT_THRESHOLDS["int8"], "--min-agreement-int8",
                                             help="Pass threshold for int8 variants."),
    int8_float_layers: str = typer.Option("auto", "--int8-float-layers",
                                          help="Full-integer int8: 'auto' keeps float the fewest layers, chosen by "
                                               "measurement on calibration-source images not used to calibrate, that "
                                               "reach the int8 threshold + 0.01 there (none if plain int8 does); "
                                               "'outputs' tries only the heads' logit layers in float (no layer "
                                               "scan); 'none'; or a comma list of layer output tensor names."),
) -> None:
    """Export an estimator to ONNX / TFLite / CoreML, print the parity table, write the model bundle.

    Models below their parity threshold are left out of the bundle unless --keep-failed (exit 2 either way)."""
    from converters.export import ExportOptions, export_model, parse_int8_float_layers
    from converters.formats import parse_targets
    targets = parse_targets(formats, precisions.split(",") if precisions else None)
    thresholds = {"fp32": min_agreement_fp, "fp16": min_agreement_fp, "dynamic_int8": min_agreement_int8,
                  "int8": min_agreement_int8}
    out = out or model.parent / "export"
    if calibration_images < 300:
        import warnings
        warnings.warn(f"--calibration-images {calibration_images}: fewer than 300 calibration images may hurt int8 accuracy")
    from ..engines.bundle_engine import engine_record
    opts = ExportOptions(targets=targets, int8_calibration=int8_calibration, eval_set=eval_set, thresholds=thresholds,
                         calibration_count=calibration_images, min_calibration=min(calibration_images, 300),
                         bundle=bundle, face_detector=face_detector, fetch_face_detector=fetch_detector,
                         keep_failed=keep_failed, no_parity=no_parity,
                         engine_spec=None if engine is None else engine_record(engine),
                         int8_float_layers=parse_int8_float_layers(int8_float_layers))
    with err_console.status("exporting") as status:
        report = export_model(model, out, opts, progress=lambda msg: status.update(f"exporting: {msg}"))
    table = Table("format", "precision", "size MB", "status", "worst head", "pooled", "worst cont. mean / max abs",
                  title=f"export parity ({report['eval_images'] or 'no evaluation images'})")
    for r in report["rows"]:
        size = "" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e6:.2f}"
        agree = "" if r["agreement"] is None else f"{r['agreement']:.4f}"
        worst = "" if r["worst_head"] is None else f"{r['worst_head']} {r['worst_head_agreement']:.4f}"
        worst_mean = (r.get("cont_per_param") or {}).get(r.get("worst_cont"), r["cont_mean_abs"])
        cont = "" if r["cont_mean_abs"] is None else (
            f"{r.get('worst_cont') or ''} {worst_mean:.1e} / {r['cont_max_abs']:.1e}").strip()
        status_text = (r["status"] + (f": {r['reason']}" if r["reason"] else "")
                       + ("; left out of the bundle" if r.get("bundled") is False else ""))
        table.add_row(r["format"], r["precision"], size, escape(status_text), worst, agree, cont)
    console.print(table)
    for w in report["warnings"]:
        err_console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(f"files in {out}/: parity.json, parity.md" + (f", {Path(report['bundle']).name}" if report.get("bundle") else ""))
    if not report["passed"]:
        err_console.print("[bold red]error:[/] some formats failed or are below their parity threshold (see the table)")
        raise typer.Exit(2)


def _engine_spec_text(rec: Optional[dict]) -> str:
    if not rec:
        return "not recorded (predict --render needs --engine unless the engine is built in)"
    where = f" in {rec['cwd']}" if rec.get("cwd") else ""
    return f"{rec['spec']} ({rec['kind']}{where}; built on {rec.get('host') or '?'})"


@bundle_app.command("inspect")
def bundle_inspect(file: Path = typer.Argument(..., help="A .swiftavatar bundle.")) -> None:
    """Print a bundle's manifest as tables."""
    from sdk_python.bundle import BundleError, open_bundle
    try:
        with open_bundle(file) as b:
            m = b.manifest
    except BundleError as exc:
        raise AvatarToolError(str(exc)) from None
    head = Table("field", "value", title=f"{file.name}")
    inp = m["input"]
    for k, v in [("format version", m["format_version"]), ("created by", m.get("created_by")), ("created", m.get("created")),
                 ("engine", m["engine"]), ("input", f"{inp['size']}x{inp['size']} {inp.get('color', 'RGB')}"),
                 ("normalisation", f"mean {inp['normalization']['mean']} std {inp['normalization']['std']}"),
                 ("face detector", (m.get("face_detector") or {}).get("file", "NONE (bundle has no detector)")),
                 ("engine spec", _engine_spec_text(m.get(contract.ENGINE_SPEC_FIELD)))]:
        head.add_row(k, escape(str(v)))
    console.print(head)
    outs = Table("output", "kind", "parameter(s)")
    for name, o in m["outputs"].items():
        outs.add_row(name, o["kind"], ", ".join(o["parameters"]) if o["kind"] == "continuous" else o["parameter"])
    console.print(outs)
    models = Table("file", "format", "precision", "size MB", "sha256", "status", "worst head", "quantization")
    for e in m["models"]:
        p = e.get("parity") or {}
        agree = ("" if p.get("agreement") is None else f"{p['agreement']:.4f}" if p.get("worst_head") is None
                 else f"{p['worst_head']} {p['worst_head_agreement']:.4f}")
        size = m["members"].get(e["file"], {}).get("size", 0) / 1e6
        models.add_row(e["file"], e["format"], e["precision"], f"{size:.2f}", m["members"].get(e["file"], {}).get("sha256", "")[:12],
                       escape(p.get("status") or "unvalidated"), agree, escape(json.dumps(e.get("quantization"))))
    console.print(models)
    left_out = [r for r in m.get("parity", []) if isinstance(r, dict) and r.get("bundled") is False]
    for r in left_out:
        err_console.print(f"[yellow]left out:[/] {escape(str(r.get('format')))} {escape(str(r.get('precision')))} "
                          f"({escape(str(r.get('status')))}: {escape(str(r.get('reason') or ''))})")
    for w in m.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {escape(w)}")


@bundle_app.command("verify")
def bundle_verify(file: Path = typer.Argument(..., help="A .swiftavatar bundle.")) -> None:
    """Check a bundle: structure, version, member paths, alignment, every sha256."""
    from sdk_python.bundle import BundleError, open_bundle
    try:
        with open_bundle(file) as b:
            results = b.checks()
            has_detector = b.has_face_detector
    except BundleError as exc:
        raise AvatarToolError(str(exc)) from None
    table = Table("check", "result", "detail")
    for r in results:
        table.add_row(escape(r.name), "[green]ok[/]" if r.ok else "[red]FAILED[/]", escape(r.detail))
    console.print(table)
    if not has_detector:
        err_console.print("[yellow]warning:[/] this bundle has no face detector; the SDK needs one passed separately")
    bad = [r for r in results if not r.ok]
    if bad:
        raise AvatarToolError(f"{file}: " + "; ".join(f"{r.name}: {r.detail}" for r in bad))
    console.print(f"[green]ok[/]: {file} verified ({len(results)} checks)")


@app.command()
def predict(
    images: list[str] = typer.Argument(..., help="Image files, folders of images, or glob patterns ('photos/*.jpg')."),
    bundle: Path = typer.Option(..., "--bundle", "-b", help="A .swiftavatar bundle or an exported estimator.onnx."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, litert, coreml or torch."),
    precision: str = typer.Option("auto", "--precision", help="auto or one of " + ", ".join(contract.PRECISIONS) + "."),
    detection: str = typer.Option("mediapipe", "--detection", help="mediapipe, or none for pre-framed avatar images."),
    detector: str = typer.Option("auto", "--detector", help="short (selfies), full (faces far away) or auto "
                                 "(short, then full when it finds nothing or the image is large)."),
    faces: str = typer.Option("largest", "--faces", help="Several faces: largest, all, or error."),
    min_face_confidence: float = typer.Option(0.6, "--min-face-confidence", help="Detection score threshold."),
    min_face_size: int = typer.Option(24, "--min-face-size", help="Smaller faces (px) are reported, not estimated."),
    mirror_tta: bool = typer.Option(False, "--mirror-tta", help="Average each face with its mirror image: steadier "
                                    "answers and crops, a spread for continuous parameters; twice the inference."),
    render: bool = typer.Option(False, "--render", help="Render each avatar with the engine next to its photo (the "
                                "engine the bundle records, or --engine)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="The engine for --render, overriding the one the "
                                         "bundle records: a built-in or plug-in name, 'package.module:Class' or "
                                         "'cmd:<command>' (run in the current folder)."),
    trust_bundle_engine: bool = typer.Option(False, "--trust-bundle-engine", help="Run the external command a "
                                             "bundle made on another machine records as its engine (it is printed "
                                             "first). Without it such a bundle needs --engine."),
    out: Path = typer.Option(Path("predictions"), "--out", "-o", help="Folder for --render images."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Estimate avatar vectors for face photos with the reference SDK (the model loads once for all images)."""
    from .predict import predict_files
    if (engine or trust_bundle_engine) and not render:
        raise AvatarToolError("--engine and --trust-bundle-engine only matter with --render: add --render or drop them")
    results = predict_files(bundle, images, backend=backend, precision=precision, detection=detection,
                            render_dir=out if render else None, detector=detector, faces=faces,
                            engine=engine, trust_bundle_engine=trust_bundle_engine,
                            say=lambda msg: err_console.print(escape(msg)),
                            min_face_confidence=min_face_confidence, min_face_size=min_face_size, mirror_tta=mirror_tta)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                err_console.print(f"[bold red]{escape(r['image'])}[/]: {escape(r['error'])}")
                continue
            res = r["result"]
            n_found, t = res.get("faces_found", 1), res["timings_ms"]
            for i, a in enumerate(res["avatars"]):
                which = (f"face {i + 1} of {n_found}" if len(res["avatars"]) > 1
                         else (f"largest of {n_found} faces" if n_found > 1 else "1 face"))
                table = Table("parameter", "value", "label", "confidence", "alternatives",
                              title=f"{escape(r['image'])}: {which} ({r['backend']}, score {a['score']:.2f}, "
                                    f"{t['total']:.1f} ms)")
                q = a.get("quality") or {}
                unreliable = set(q.get("unreliable_parameters") or ())
                for name, p in a["parameters"].items():
                    value = f"{p['value']:.3f}" if isinstance(p["value"], float) else str(p["value"])
                    if p.get("uncertainty") is not None:
                        value += f" ± {p['uncertainty']:.3f}"
                    conf = "" if p["confidence"] is None else f"{p['confidence']:.2f}"
                    if name in unreliable:
                        conf += " (unreliable: no colour)"
                    alts = ", ".join(f"{label} {prob:.2f}" for _, label, prob in p.get("alternatives", [])[1:])
                    table.add_row(name, value, p["label"] or "", conf, escape(alts))
                if q:
                    pose = "/".join("?" if q.get(k) is None else f"{q[k]:+.0f}" for k in ("yaw", "pitch", "roll"))
                    table.caption = (f"face {q['size_px']:.0f} px, sharpness {q['blur']:.0f}, brightness "
                                     f"{q['brightness']:.2f}, yaw/pitch/roll {pose} deg"
                                     + (", grayscale" if q.get("grayscale") else ""))
                console.print(table)
                for w in q.get("warnings", []):
                    err_console.print(f"[yellow]quality:[/] {escape(w)}")
            if r.get("render"):
                console.print(f"rendered: {r['render']}")
    if any("error" in r for r in results):
        raise typer.Exit(1)


def _gan_progress(progress: Progress):
    task: list[int] = []

    def update(phase: str, done: int, total: int, info: dict | None = None) -> None:
        if not task:
            task.append(progress.add_task(phase, total=total))
        desc = f"{phase} D {info['d']:.3f} G {info['g']:.3f}" if info else phase
        progress.update(task[0], completed=done, total=total, description=desc)
    return update


_PRECISION_HELP = ("Arithmetic of the G and D passes: auto (bf16 on CUDA and on CPUs with native bf16, i.e. AMX or "
                   "AVX512-BF16; fp32 elsewhere), bf16 or fp32. It changes the weights: a run resumes in the one it began in.")


@app.command("gan-train")
def gan_train(
    data: Path = typer.Option(..., "--data", "-d", help="Folder of images/ + masks/ (render folder or unlabelled proxy set)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (resumed if it holds a checkpoint)."),
    config: str = typer.Option("tiny", "--config", help="Generator config: tiny, face64, small64, engine256, official256, official512."),
    train_config: Optional[str] = typer.Option(None, "--train-config", help="Training preset (default: tiny for tiny, else paper)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Override the preset's iterations."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the preset's batch size."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (1 is fastest on a busy machine)."),
    precision: str = typer.Option("auto", "--precision", help=_PRECISION_HELP),
    keep_every: Optional[int] = typer.Option(None, "--keep-every", min=0,
                                             help="Also keep G_ema's weights every N steps in OUT/kept/ (0: none)."),
) -> None:
    """Train the realistic generator G_real (SemanticStyleGAN) on (image, mask) pairs."""
    from ..generators.config import generator_preset
    from ..generators.train_real import train_preset, train_real
    from ..precision import check_precision
    from ..torch_utils import configure_cpu_math
    configure_cpu_math(threads)
    tcfg = train_preset(train_config or ("tiny" if config == "tiny" else "paper"), iters=iters, batch_size=batch_size,
                        precision=check_precision(precision, "--precision"), keep_every=keep_every)
    from .. import distributed
    with distributed.process_group(device), make_progress() as progress:
        summary = train_real(data, out, generator_preset(config), tcfg, device=device, progress=_gan_progress(progress))
    console.print(f"[green]done[/]: {summary['steps_done']} steps -> {out}/generator.safetensors, samples/, stats.jsonl")


@app.command()
def finetune(
    engine: str = typer.Option(..., "--engine", "-e", help="Engine whose renders define the avatar domain."),
    real_generator: Path = typer.Option(..., "--real-generator", help="G_real: generator.safetensors from gan-train."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (renders/ is written here unless --renders)."),
    renders: Optional[Path] = typer.Option(None, "--renders", help="Use this render folder instead of rendering."),
    n: int = typer.Option(2000, "-n", help="How many renders to draw."),
    render_size: int = typer.Option(64, "--render-size", help="Render size in pixels (resized to the generator's)."),
    train_config: str = typer.Option("tiny", "--train-config", help="Training preset: tiny, small64 or paper."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Override the preset's iterations."),
    color_weight: float = typer.Option(1.0, "--color-weight", help="Weight of the colour-matching loss (0: off)."),
    freeze_local: bool = typer.Option(False, "--freeze-local", help="Keep the local generators (part shapes) fixed."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
    precision: str = typer.Option("auto", "--precision", help=_PRECISION_HELP),
    workers: Workers = DEFAULT_WORKERS,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    engine_timeout: EngineTimeout = DEFAULT_ENGINE_TIMEOUT_S,
) -> None:
    """Finetune G_avatar from G_real on engine renders (StyleGAN2 losses + colour-matching loss)."""
    from ..generators.finetune import discriminator_beside, finetune as run_finetune
    from ..generators.train_real import train_preset
    from ..precision import check_precision
    from ..torch_utils import configure_cpu_math
    configure_cpu_math(threads)
    tcfg = train_preset(train_config, iters=iters, precision=check_precision(precision, "--precision"))
    from .. import distributed
    disc = discriminator_beside(real_generator)
    console.print(f"discriminator: starts from {disc}" if disc else
                  f"discriminator: trained from scratch (no discriminator.safetensors beside {real_generator})")
    with distributed.process_group(device), make_progress() as progress:
        summary = run_finetune(engine, real_generator, out, tcfg, discriminator=disc,
                               colour_weight=color_weight, freeze_local=freeze_local,
                               renders=renders, n_renders=n, render_size=render_size, device=device,
                               progress=_gan_progress(progress),
                               engine_options=engine_options(workers, batch_size, engine_timeout))
    console.print(f"[green]done[/]: {summary['steps_done']} steps -> {out}/generator.safetensors, samples/, stats.jsonl")


@app.command("gan-grid")
def gan_grid(
    real: Path = typer.Option(..., "--real", help="G_real generator.safetensors."),
    avatar: Path = typer.Option(..., "--avatar", help="G_avatar generator.safetensors."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write."),
    n: int = typer.Option(16, "-n", help="How many latents."),
    seed: int = typer.Option(0, "--seed", help="Latent seed."),
    truncation: float = typer.Option(0.7, "--truncation", help="Truncation psi (1: none)."),
) -> None:
    """Dual-domain grid (paper Fig. 4): the same latents through G_real and G_avatar, with segmentations."""
    import torch
    from ..atomic_io import save_png_atomic
    from ..generators.grids import dual_domain_grid
    from ..generators.io import load_generator
    g_real, _ = load_generator(real)
    g_avatar, _ = load_generator(avatar)
    z = torch.randn(n, g_real.cfg.style_dim, generator=torch.Generator().manual_seed(seed))
    save_png_atomic(out, dual_domain_grid(g_real, g_avatar, z, truncation=truncation))
    console.print(f"[green]done[/]: {out} (rows: real image, real segmentation, avatar image, avatar segmentation)")


@app.command()
def pairs(
    engine: str = typer.Option(..., "--engine", "-e", help="Engine whose renders are inverted."),
    generators: Optional[Path] = typer.Option(None, "--generators", help="Folder with real/ + avatar/, or a finetune run folder."),
    real_generator: Optional[Path] = typer.Option(None, "--real-generator", help="G_real generator.safetensors (overrides)."),
    avatar_generator: Optional[Path] = typer.Option(None, "--avatar-generator", help="G_avatar generator.safetensors (overrides)."),
    n: int = typer.Option(..., "-n", help="How many source renders (each gives 1 + k samples)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder (resumed if it exists)."),
    renders: Optional[Path] = typer.Option(None, "--renders", help="Render folder to use (default: <out>/renders)."),
    render_size: int = typer.Option(64, "--render-size", help="Render size when rendering."),
    k: int = typer.Option(10, "-k", help="Augmented copies per code."),
    augment: str = typer.Option(PAPER_STRENGTHS_TEXT, "--augment", help="Semantic augmentation strength per part, "
                                "PART=λ,... (generator parts or mask labels; 'none': no part, use with -k 0)."),
    steps: int = typer.Option(200, "--steps", help="Inversion steps."),
    batch: int = typer.Option(64, "--batch", help="Inversion slots: images optimised together (fixed batch shape)."),
    chunk: int = typer.Option(32, "--chunk", help="Sources per shard (a killed run resumes at a shard boundary)."),
    max_loss: Optional[float] = typer.Option(None, "--max-loss", help="Quality filter: a fixed threshold on the final loss "
                                             "(default: drop a source when its loss is an outlier of its chunk, Q3 + 1.5 IQR, "
                                             "and above 0.25 with the weight-free fallback or 0.6 with LPIPS; <0: off)."),
    early_stop: bool = typer.Option(False, "--early-stop", help="Stop a sample when its loss stops improving (the paper "
                                    "runs every sample its full --steps)."),
    latent_anchor: str = typer.Option("start", "--latent-anchor", help="The latent term pulls to the start code "
                                      "(start) or to w_mean (mean, the paper's literal regulariser)."),
    init: str = typer.Option("modified", "--init", help="Start codes: modified (asset present/absent codes), present (w~_mean) or mean (w_mean)."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="torchvision AlexNet weights for LPIPS."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
    precision: str = typer.Option("auto", "--precision", help="Arithmetic of G_avatar's pass in each inversion step: "
                                  "auto (bf16 on CPUs with native bf16, i.e. AMX or AVX512-BF16; fp32 elsewhere), bf16 "
                                  "or fp32. Losses, gradients and codes stay fp32; a dataset resumes in the one it began in."),
    mask_weight: float = typer.Option(0.0, "--mask-weight", help="Weight of the inversion's part-map term (ours, not the "
                                      "paper's): cross-entropy of G_avatar's part probabilities against each render's "
                                      "mask; 0 = image losses only. Needs renders with masks."),
    recolour: str = typer.Option("none", "--recolour", help="Parts whose mean colour every realistic face takes from "
                                 "its render, e.g. hair,skin (ours, not the paper's: G_real draws only the colours its "
                                 "photos have); 'none': off. Needs renders with masks."),
    workers: Workers = DEFAULT_WORKERS,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    engine_timeout: EngineTimeout = DEFAULT_ENGINE_TIMEOUT_S,
) -> None:
    """Paired data: invert renders in G_avatar, synthesise with G_real, augment; resumable sharded dataset."""
    from ..production.augment import AugmentConfig
    from ..production.init_latent import InitConfig
    from ..production.inversion import EARLY_STOP_TOL, InversionConfig, inversion_precision
    from ..production.pairs import PairsConfig, produce_pairs, resolve_generators
    from ..production.strengths import parse_recolour, parse_strengths
    from ..precision import check_precision
    strengths = parse_strengths(augment, key="--augment")
    from ..torch_utils import configure_cpu_math
    configure_cpu_math(threads)
    real, avatar = resolve_generators(generators, real_generator, avatar_generator)
    limit = "auto" if max_loss is None else (None if max_loss < 0 else max_loss)
    cfg = PairsConfig(engine=engine, n=n, renders=str(renders) if renders else None, render_size=render_size, chunk=chunk,
                      max_loss=limit, latent_anchor=latent_anchor, lpips_weights=str(lpips_weights) if lpips_weights else None,
                      init=InitConfig(mode=init), augment=AugmentConfig(k=k, strengths=strengths),
                      inversion=InversionConfig(steps=steps, batch_size=batch,
                                                early_stop_tol=EARLY_STOP_TOL if early_stop else 0.0,
                                                precision=inversion_precision(check_precision(precision, "--precision")),
                                                lambda_s=mask_weight),
                      recolour=parse_recolour(recolour, key="--recolour"),
                      render_options=engine_options(workers, batch_size, engine_timeout))
    from .. import distributed
    with distributed.process_group(), make_progress() as progress:
        task = progress.add_task("pairs", total=n)

        def update(done: int, total: int, info: dict) -> None:
            progress.update(task, completed=done, total=total,
                            description=f"inverted; sealed {info['sealed']}, kept {info['kept']}, dropped {info['dropped']}")
        summary = produce_pairs(cfg, out, real, avatar, progress=update)
    lp = summary["lpips"]
    console.print(f"[green]done[/]: {summary['samples']} samples from {summary['kept_sources']} sources -> {out}; "
                  f"quality filter (loss > {summary['max_loss']}) dropped {summary['dropped_sources']}; "
                  f"perceptual loss: {'LPIPS' if lp['used'] else lp['fallback']}; picture: {summary.get('grid')}")


def _default_run_dir(engine: str, preset: str) -> Path:
    import re
    slug = re.sub(r"[^A-Za-z0-9]+", "-", engine.split("/")[-1]).strip("-")[:40] or "engine"
    return Path("runs") / f"build-{slug}-{preset}"


@app.command()
def build(
    engine: str = typer.Option(..., "--engine", "-e", help="Engine name, 'module:Class' or 'cmd:<command>'."),
    preset: str = typer.Option("smoke", "--preset", "-p", help="smoke (~15 min on 2 cores with native bf16, ~25 min without), cpu (~2 h with bf16) or paper (GPU)."),
    run_dir: Optional[Path] = typer.Option(None, "--run", "-o", help="Run directory (default: runs/build-<engine>-<preset>)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="YAML file of settings (sections: render, real, "
                                               "avatar, pairs, train, export, eval, baseline)."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Override one setting, e.g. --set pairs.k=3 (repeatable)."),
    force: Optional[list[str]] = typer.Option(None, "--force", help="Rerun this stage and every stage after it (repeatable)."),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this stage (e.g. --until pairs, to look at the "
                                        "pairs before the estimator trains); the command without it goes on from there."),
    real_generator: Optional[Path] = typer.Option(None, "--real-generator",
                                                  help="G_real: our generator.safetensors or the released SemanticStyleGAN .pt."),
    real_images: Optional[Path] = typer.Option(None, "--real-images",
                                               help="Face photos with part masks (image+mask folder or CelebAMask-HQ layout)."),
    eval_set: Optional[Path] = typer.Option(None, "--eval-set", help="Your labelled evaluation set (default: drawn here)."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="torchvision AlexNet weights (LPIPS)."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="ImageNet ResNet-18 weights."),
    early_stop: Optional[bool] = typer.Option(None, "--early-stop/--no-early-stop", help="Stop a sample's inversion when it stops improving."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Time a few units of each stage first and print estimates."),
    workers: WorkersOverride = None,
    batch_size: BatchSizeOverride = None,
    engine_timeout: EngineTimeoutOverride = None,
    nproc_per_node: Optional[int] = typer.Option(None, "--nproc-per-node", help="Start torchrun with N processes on this "
                                                 "node (one per GPU); ignored inside torchrun/SLURM. See docs/cluster.md."),
) -> None:
    """Build an estimator for ENGINE end to end: renders, generators, pairs, training, export, a verified
    bundle and a report. Rerun the same command to resume; finished stages are skipped."""
    from .. import distributed, launch
    if launch.should_launch(nproc_per_node):
        raise typer.Exit(launch.relaunch(sys.argv[1:], nproc_per_node))
    from ..pipeline.build import build as run_build
    from ..pipeline.config import resolve_config
    from ..pipeline.runner import QuietUI
    from .build_ui import RichBuildUI
    lp = str(lpips_weights) if lpips_weights else None
    explicit = {"real.generator": str(real_generator) if real_generator else None,
                "real.images": str(real_images) if real_images else None,
                "eval.set": str(eval_set) if eval_set else None, "eval.lpips_weights": lp, "pairs.lpips_weights": lp,
                "train.backbone_weights": str(backbone_weights) if backbone_weights else None,
                "pairs.early_stop": early_stop, "device": device, "threads": threads, "render.workers": workers,
                "render.batch_size": batch_size, "render.engine_timeout": engine_timeout}
    cfg = resolve_config(engine, preset, config_file, settings or [], **explicit)
    from ..pipeline.build import STAGES
    from ..pipeline.runner import stages_after
    stages_after(STAGES, until)   # an unknown --until stage is refused before the estimate or any stage runs
    run_dir = run_dir or _default_run_dir(engine, preset)
    dist = distributed.detect()
    estimates = None
    if calibrate and not dist.enabled:   # the estimates time one process; under torchrun they would mislead
        from ..pipeline.calibrate import opening_estimate
        estimates, line = opening_estimate(cfg, run_dir, force or [], until)
        err_console.print(line, highlight=False, soft_wrap=True)
    try:
        with distributed.process_group(cfg.device, timeout_s=distributed.BUILD_TIMEOUT_S), \
                (RichBuildUI(err_console) if dist.is_main else contextlib.nullcontext(QuietUI())) as ui:
            results = run_build(cfg, run_dir, ui=ui, force=force or [], estimates=estimates, stop_after=until)
    except (AvatarToolError, SchemaError, VectorError, AvatarSDKError) as exc:
        raise AvatarToolError(f"{exc} — finished work is kept; resume with: {_resume_command()}") from exc
    if not dist.is_main:
        return
    ran = [r for r in results if r.status != "skipped"]
    total = sum(r.seconds for r in ran)
    out = {r.name: r.record.get("outputs", {}) for r in results}
    console.print(f"[green]done[/]: {len(ran)} stage(s) ran in {total:.0f} s, {len(results) - len(ran)} up to date")
    if until is not None and "report" not in out:
        console.print(f"stopped after {until} (--until): its outputs are in {run_dir / until}; the same command "
                      "without --until goes on from there")
        return
    console.print(f"bundle: {out.get('export', {}).get('bundle')}")
    console.print(f"report: {out.get('report', {}).get('report_html')}")


def _resume_command() -> str:
    import shlex
    argv = list(sys.argv)
    argv[0] = "avatartool"
    argv = [a for i, a in enumerate(argv) if a != "--force" and (i == 0 or argv[i - 1] != "--force")]
    return " ".join(shlex.quote(a) for a in argv)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    import warnings
    warnings.showwarning = _show_warning
    if "--debug" not in sys.argv[1:]:
        from sdk_python.native_logs import silence_native_logs
        silence_native_logs()   # before anything imports mediapipe / tensorflow / LiteRT
    else:   # the SDK hides the runtimes' set-up lines by default: --debug wants them
        from sdk_python.native_logs import LOGS_ENV
        os.environ.setdefault(LOGS_ENV, "1")
    try:
        app()
    except (AvatarToolError, SchemaError, VectorError, AvatarSDKError) as exc:
        if _state["debug"]:
            traceback.print_exc()
        # escape: engine messages (e.g. an external engine's stderr) may contain [brackets] that rich
        # would eat or choke on; soft_wrap: keep the message on one line even when stderr is not a tty.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished files are kept; rerun the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
