"""The held-out evaluation set the build measures itself on: the user's labelled set, the labelled photo
proxy (built-in engines; its vectors come from a seed stream no render uses), or, for engines the face
painter cannot draw, held-out renders of the engine from a seed the training renders do not use."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...engines.registry import BUILTIN_NAMES
from ...evaluation.evaluate import load_labelled_set
from ...proxy.eval_set import write_proxy_set
from ...render.job import RenderConfig, describe_restart, render_folder
from ..runner import StageContext

HELDOUT_RENDER_SEED = 1_000_003   # added to eval.seed: never the training stream's seed


def heldout_render_seed(eval_seed: int, render_seed: int) -> int:
    seed = HELDOUT_RENDER_SEED + eval_seed
    return seed + 1 if seed == render_seed else seed


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.cfg.eval
    set_dir = ctx.dir / "set"
    if c.set:
        set_dir = Path(c.set).resolve()
        kind, note = "user", f"user evaluation set {set_dir}"
    elif ctx.cfg.engine in BUILTIN_NAMES:
        write_proxy_set(ctx.cfg.engine, set_dir, n=c.n, seed=c.seed, size=c.size, role="eval",
                        progress=lambda d, t: ctx.progress(d, t, "photo proxy"))
        kind, note = "photo-proxy", f"{c.n} labelled photo-proxy faces (seed {c.seed}), drawn here"
    else:
        r = ctx.cfg.render
        seed = heldout_render_seed(c.seed, r.seed)
        render_folder(RenderConfig(engine=ctx.cfg.engine, n=c.n, seed=seed, size=max(c.size, 32), workers=r.workers,
                                   batch_size=r.batch_size, masks=True, timeout_s=r.engine_timeout),
                      set_dir, progress=lambda d, t: ctx.progress(d, t, "held-out renders"),
                      on_restart=lambda r: ctx.warn(describe_restart(r)))
        kind = "held-out renders"
        note = f"{c.n} held-out renders (seed {seed})"
        ctx.warn(f"engine '{ctx.cfg.engine}' has no labelled photo set here: evaluated on {note}, which measures fit "
                 "to the engine, not the photo domain gap; pass eval.set=DIR (your photos + labels) for that")
    labelled = load_labelled_set(set_dir)   # fails here, clearly, on a malformed user set
    return {"set": str(set_dir), "kind": kind, "n": len(labelled.items), "set_id": labelled.set_id, "note": note,
            "files": [str(set_dir)]}
