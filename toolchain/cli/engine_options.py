"""The engine options of every command that renders (render, baseline, build, finetune, pairs): defined
once here, with the defaults of ``toolchain.render.job``, so the commands cannot drift apart.

Use them as parameter types::

    def render(..., workers: Workers = DEFAULT_WORKERS, batch_size: BatchSize = DEFAULT_BATCH_SIZE,
               engine_timeout: EngineTimeout = DEFAULT_ENGINE_TIMEOUT_S): ...

``build`` takes the same options as overrides of its configuration (``None``: the preset's value, whose
defaults are these same numbers).
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..render.job import DEFAULT_BATCH_SIZE, DEFAULT_ENGINE_TIMEOUT_S, DEFAULT_WORKERS, EngineOptions

__all__ = ["BatchSize", "BatchSizeOverride", "DEFAULT_BATCH_SIZE", "DEFAULT_ENGINE_TIMEOUT_S", "DEFAULT_WORKERS",
           "EngineTimeout", "EngineTimeoutOverride", "Workers", "WorkersOverride", "engine_options"]

_PANEL = "Engine options (shared by every command that renders)"
_WORKERS = ("--workers", "-w")
_WORKERS_HELP = "Render worker processes, each with its own engine (0: render in this process)."
_BATCH = ("--batch-size",)
_BATCH_HELP = "Vectors per render request to the engine."
_TIMEOUT = ("--engine-timeout",)
_TIMEOUT_HELP = "Seconds an external engine may take per request (start-up included)."

Workers = Annotated[int, typer.Option(*_WORKERS, help=_WORKERS_HELP, rich_help_panel=_PANEL)]
BatchSize = Annotated[int, typer.Option(*_BATCH, help=_BATCH_HELP, rich_help_panel=_PANEL)]
EngineTimeout = Annotated[float, typer.Option(*_TIMEOUT, help=_TIMEOUT_HELP, rich_help_panel=_PANEL)]

WorkersOverride = Annotated[Optional[int], typer.Option(
    *_WORKERS, help=f"{_WORKERS_HELP} Default: the preset's ({DEFAULT_WORKERS}).", rich_help_panel=_PANEL)]
BatchSizeOverride = Annotated[Optional[int], typer.Option(
    *_BATCH, help=f"{_BATCH_HELP} Default: the preset's ({DEFAULT_BATCH_SIZE}).", rich_help_panel=_PANEL)]
EngineTimeoutOverride = Annotated[Optional[float], typer.Option(
    *_TIMEOUT, help=f"{_TIMEOUT_HELP} Default: the preset's ({DEFAULT_ENGINE_TIMEOUT_S:g}).", rich_help_panel=_PANEL)]


def engine_options(workers: int, batch_size: int, engine_timeout: float) -> EngineOptions:
    return EngineOptions(workers=workers, batch_size=batch_size, timeout_s=engine_timeout)
