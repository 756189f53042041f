"""``avatartool``: the command line. A thin layer: every command calls a library function."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
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


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    try:
        app()
    except (AvatarToolError, SchemaError, VectorError) as exc:
        if _state["debug"]:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished files are kept; rerun the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
