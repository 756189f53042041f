"""Adapters from the training loops' progress callbacks to the build's display."""
from __future__ import annotations

from typing import Any, Callable

from ..runner import StageContext


def gan_progress(ctx: StageContext) -> Callable[..., None]:
    def update(phase: str, done: int, total: int, info: dict[str, Any] | None = None) -> None:
        detail = f"{phase} D {info['d']:.3f} G {info['g']:.3f}" if info and "d" in info and "g" in info else phase
        ctx.progress(done, total, detail)
    return update


def train_progress(ctx: StageContext, label: str = "train") -> Callable[..., None]:
    def update(phase: str, done: int, total: int, info: dict[str, Any] | None = None) -> None:
        detail = f"{label} epoch {info.get('epoch')} loss {info.get('loss', 0):.3f}" if info else f"{label} {phase}"
        ctx.progress(done, total, detail)
    return update
