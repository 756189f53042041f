"""Stage 3: G_avatar — G_real finetuned on the engine's renders (StyleGAN2 losses + colour-matching loss),
and the dual-domain grid (paper Fig. 4): the same latents through both generators."""
from __future__ import annotations

from typing import Any

import torch

from ... import distributed
from ...atomic_io import save_png_atomic
from ...generators.finetune import finetune
from ...generators.grids import dual_domain_grid
from ...generators.io import load_generator
from ...generators.train_real import train_preset
from ...precision import resolve_precision
from ...torch_utils import select_device
from ..runner import StageContext
from .progress import gan_progress


def _grid(real: str, out) -> None:
    g_real, _ = load_generator(real)
    g_avatar, _ = load_generator(out / "generator.safetensors")
    z = torch.randn(16, g_real.cfg.style_dim, generator=torch.Generator().manual_seed(0))
    save_png_atomic(out / "dual_domain_grid.png", dual_domain_grid(g_real, g_avatar, z, truncation=0.7))


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.cfg.avatar
    real = ctx.output("real_generator")["generator"]
    # named by the stage, not looked up beside the weights: a G_real restored from the cache brings its
    # discriminator too, so a build finetunes the same with or without a cache
    disc = ctx.output("real_generator").get("discriminator")
    renders = ctx.output("render")["folder"]
    tcfg = train_preset(c.train_preset, iters=c.iters, batch_size=c.batch_size, precision=c.precision)
    if c.colour_weight <= 0:
        ctx.warn("colour loss off (avatar.colour_weight=0): hair and skin colours may drift between the domains")
    finetune(ctx.cfg.engine, real, ctx.dir, tcfg, discriminator=disc, colour_weight=c.colour_weight,
             freeze_local=c.freeze_local,
             renders=renders, device=ctx.cfg.device, progress=gan_progress(ctx))
    distributed.on_main(_grid, real, ctx.dir)
    return {"generator": str((ctx.dir / "generator.safetensors").resolve()), "real_generator": real,
            "iters": tcfg.iters, "colour_weight": c.colour_weight, "discriminator_init": disc,
            "precision": resolve_precision(tcfg.precision, select_device(ctx.cfg.device)),
            "files": ["generator.safetensors", "stats.jsonl", "dual_domain_grid.png"]}
