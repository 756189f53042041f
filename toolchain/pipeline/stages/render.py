"""Stage 1: sample avatar vectors and render them with the engine (the render folder is the stage folder)."""
from __future__ import annotations

from typing import Any

from ...render.folder import RenderFolder
from ...render.job import RenderConfig, describe_restart, render_folder
from ..runner import StageContext


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.cfg.render
    summary = render_folder(RenderConfig(engine=ctx.cfg.engine, n=c.n, seed=c.seed, size=c.size, workers=c.workers,
                                         batch_size=c.batch_size, masks=True, timeout_s=c.engine_timeout),
                            ctx.dir, progress=lambda done, total: ctx.progress(done, total, "images"),
                            on_restart=lambda r: ctx.warn(describe_restart(r)))
    folder = RenderFolder.open(ctx.dir)
    if not summary.has_masks:
        ctx.warn(f"engine '{folder.engine_name}' draws no part masks: G_avatar is finetuned with an image-only "
                 "discriminator, and the report's render distance covers the whole image")
    return {"folder": str(ctx.dir.resolve()), "n": c.n, "size": c.size, "seed": c.seed, "masks": summary.has_masks,
            "engine_name": folder.engine_name, "engine_restarts": len(summary.restarts), "files": ["render.json", "vectors.jsonl", "contact_sheet.png"]}
