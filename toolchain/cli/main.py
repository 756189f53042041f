"""``avatartool``: the command line. A thin layer: every command calls a library function."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import AvatarToolError
from ..schema import ContinuousParam, SchemaError, VectorError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="SwiftAvatar toolchain: engines, data production, estimator training and export.")
engines_app = typer.Typer(no_args_is_help=True, help="List and inspect avatar engines.")
app.add_typer(engines_app, name="engines")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def make_progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=False)


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
                 as_json: bool = typer.Option(False, "--json", help="Print the schema as JSON.")) -> None:
    """Show an engine's parameter schema."""
    from ..engines.registry import create_engine
    with create_engine(name) as engine:
        schema = engine.schema
    if as_json:
        print(schema.dumps())
        return
    table = Table("parameter", "kind", "values", "default", "part", "may be absent", title=f"engine '{schema.engine}'")
    for p in schema.params:
        if isinstance(p, ContinuousParam):
            table.add_row(p.name, "continuous", f"[{p.low:g}, {p.high:g}]", f"{p.default:g}", p.part or "", "")
        else:
            table.add_row(p.name, f"discrete ({len(p.options)})", ", ".join(p.options), p.options[p.default],
                          p.part or "", p.absent_option or "")
    console.print(table)
    console.print(f"mask parts: {', '.join(schema.parts)}")


@app.command()
def render(
    engine: str = typer.Option(..., "--engine", "-e", help="Engine name, 'module:Class' or 'cmd:<command>'."),
    n: int = typer.Option(64, "-n", help="How many avatar vectors to sample and render."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed; the same seed gives the same vectors."),
    size: int = typer.Option(256, "--size", help="Square image size in pixels."),
    out: Path = typer.Option(Path("renders"), "--out", "-o", help="Output folder (resumed if it exists)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes (0 renders in this process)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Vectors per render request."),
    masks: bool = typer.Option(True, "--masks/--no-masks", help="Also write part masks when the engine has them."),
    engine_timeout: float = typer.Option(60.0, "--engine-timeout", help="Seconds an external engine may take per request."),
) -> None:
    """Sample avatar vectors and render them: PNGs, masks, vectors.jsonl and a contact sheet."""
    from ..render_job import RenderConfig, render_folder
    cfg = RenderConfig(engine=engine, n=n, seed=seed, size=size, workers=workers, batch_size=batch_size,
                       masks=masks, timeout_s=engine_timeout)
    with make_progress() as progress:
        task = progress.add_task(f"render {engine}", total=n)
        summary = render_folder(cfg, out, progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"[green]done[/]: {summary.rendered} rendered, {summary.skipped} already there -> {out}/ "
                  f"(images/, {'masks/, ' if summary.has_masks else ''}vectors.jsonl, contact_sheet.png)")


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
    cfg = preset(config, epochs=epochs, batch_size=batch_size)
    with make_progress() as progress:
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
    workers: int = typer.Option(2, "--workers", "-w", help="Render worker processes."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="ImageNet ResNet-18 weights."),
) -> None:
    """The paper's Baseline: render, build a paired dataset of renders, train the estimator on it."""
    from ..baseline import run_baseline
    from ..estimator.train import preset
    cfg = preset(config, epochs=epochs)
    with make_progress() as progress:
        summary = run_baseline(engine, n, out, cfg, seed=seed, render_size=render_size, workers=workers,
                               backbone_weights=backbone_weights, progress=_train_progress(progress))
    _print_train_summary(summary, out / "train")


@app.command("eval")
def eval_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="estimator.pt from train/baseline."),
    set_dir: Path = typer.Option(..., "--set", help="Evaluation set folder (images + labels.jsonl + set.json)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: <model dir>/eval-<set name>)."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="torchvision AlexNet weights for LPIPS."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Engine spec to render with (default: the set's)."),
) -> None:
    """Evaluate an estimator: per-parameter accuracy/MAE, render-space distance, picture grid."""
    from ..evaluate import evaluate
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
        table.add_row(k, "MAE", f"{v:.4f}")
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    import warnings
    warnings.showwarning = _show_warning
    try:
        app()
    except (AvatarToolError, SchemaError, VectorError) as exc:
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
