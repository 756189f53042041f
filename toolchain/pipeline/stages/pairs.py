"""Stage 4: paired data — invert every render into G_avatar's W+, synthesise the face with G_real, add
semantic augmentations; a sharded dataset that resumes after a kill at any point."""
from __future__ import annotations

from typing import Any

from ...production.augment import AugmentConfig
from ...production.init_latent import InitConfig
from ...production.inversion import EARLY_STOP_TOL, InversionConfig, inversion_precision
from ...production.pairs import PairsConfig, produce_pairs
from ...production.strengths import parse_recolour, parse_strengths
from ..runner import StageContext


def _renders_have_masks(ctx: StageContext) -> bool:
    # the colour transfer and the part-map term read each render's mask: an engine that draws none builds without
    # both (the stage warns), as G_avatar then trains with an image-only discriminator
    return ctx.output("render").get("masks") is not False


def _recolour(ctx: StageContext) -> tuple[str, ...]:
    return parse_recolour(ctx.cfg.pairs.recolour) if _renders_have_masks(ctx) else ()


def _mask_weight(ctx: StageContext) -> float:
    return ctx.cfg.pairs.mask_weight if _renders_have_masks(ctx) else 0.0


def pairs_config(ctx: StageContext) -> PairsConfig:
    c, r = ctx.cfg.pairs, ctx.cfg.render
    return PairsConfig(engine=ctx.cfg.engine, n=c.n or r.n, renders=ctx.output("render")["folder"], render_size=r.size,
                       render_seed=r.seed, chunk=c.chunk,
                       max_loss="auto" if c.max_loss is None else (None if c.max_loss < 0 else c.max_loss),
                       latent_anchor=c.latent_anchor, lpips_weights=c.lpips_weights, init=InitConfig(mode=c.init, n_mean=c.init_samples, calib_steps=c.init_calib_steps),
                       inversion=InversionConfig(steps=c.steps, batch_size=c.batch,
                                                 early_stop_tol=EARLY_STOP_TOL if c.early_stop else 0.0,
                                                 precision=inversion_precision(c.precision), lambda_s=_mask_weight(ctx)),
                       augment=AugmentConfig(k=c.k, strengths=parse_strengths(c.augment, key="pairs.augment")),
                       recolour=_recolour(ctx))


def run(ctx: StageContext) -> dict[str, Any]:
    cfg = pairs_config(ctx)
    if parse_recolour(ctx.cfg.pairs.recolour) and not cfg.recolour:
        ctx.warn(f"pairs.recolour={ctx.cfg.pairs.recolour}: the renders have no part masks to read colours from, so "
                 "the realistic faces keep G_real's colours (no colour transfer)")
    if ctx.cfg.pairs.mask_weight and not cfg.inversion.lambda_s:
        ctx.warn(f"pairs.mask_weight={ctx.cfg.pairs.mask_weight}: the renders have no part masks, so the inversion "
                 "matches images only (no part-map term)")
    real = ctx.output("real_generator")["generator"]
    avatar = ctx.output("avatar_generator")["generator"]

    def update(done: int, total: int, info: dict) -> None:
        ctx.progress(done, total, f"inverted; kept {info['kept']}, dropped {info['dropped']}")
    summary = produce_pairs(cfg, ctx.dir, real, avatar, progress=update)
    if summary["samples"] == 0:
        from ...errors import AvatarToolError
        raise AvatarToolError(f"the quality filter (loss > {summary['max_loss']}) dropped every source; raise "
                              "pairs.max_loss or train the generators longer")
    return {"dataset": str(ctx.dir.resolve()), "samples": summary["samples"], "kept_sources": summary["kept_sources"],
            "dropped_sources": summary["dropped_sources"], "max_loss": summary["max_loss"], "lpips": summary["lpips"],
            "init": summary["init"].get("mode") if isinstance(summary["init"], dict) else None,
            "precision": cfg.inversion.precision, "mask_weight": cfg.inversion.lambda_s, "recolour": list(cfg.recolour),
            "grid": summary.get("grid"), "files": ["index.json", "pairs_grid.png"]}
