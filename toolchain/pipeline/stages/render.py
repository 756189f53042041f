"""Stage 1: sample avatar vectors and render them with the engine (the render folder is the stage folder).
Under torchrun each rank renders its slice of the vectors (with its own engine workers), then rank 0
checks the whole folder and draws the contact sheet."""
from __future__ import annotations

from typing import Any

from ... import distributed
from ...render.folder import RenderFolder
from ...render.job import RenderConfig, describe_restart, render_folder
from ..runner import StageContext


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.cfg.render
    rc = RenderConfig(engine=ctx.cfg.engine, n=c.n, seed=c.seed, size=c.size, workers=c.workers,
                      batch_size=c.batch_size, masks=True, timeout_s=c.engine_timeout)
    show = lambda done, total: ctx.progress(done, total, "images")  # noqa: E731
    warn = lambda r: ctx.warn(describe_restart(r))  # noqa: E731
    d = distributed.info()
    if d.enabled:
        render_folder(rc, ctx.dir, progress=show, share=(d.rank, d.world_size), on_restart=warn)
        distributed.barrier()
    summary = distributed.on_main(render_folder, rc, ctx.dir, progress=show, on_restart=warn)   # one process: renders all
    folder = RenderFolder.open(ctx.dir)
    if not summary.has_masks:
        ctx.warn(f"engine '{folder.engine_name}' draws no part masks: G_avatar is finetuned with an image-only "
                 "discriminator, and the report's render distance covers the whole image")
    return {"folder": str(ctx.dir.resolve()), "n": c.n, "size": c.size, "seed": c.seed, "masks": summary.has_masks,
            "engine_name": folder.engine_name, "engine_restarts": len(summary.restarts), "files": ["render.json", "vectors.jsonl", "contact_sheet.png"]}
