"""Stage 2: the realistic generator G_real — a file the user gives, trained on the user's face photos with
part masks (our image+mask layout or CelebAMask-HQ's), or, offline by default, trained here on the
unlabelled photo proxy. G_real only needs realistic faces, not the engine's attributes, so the default
is the same for every engine, and a trained G_real is kept in a machine-wide cache (``generators/cache.py``)
that every later build with the same photos, configs and generator code reuses (``--force real_generator``
retrains)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sdk_python.errors import AvatarSDKError

from ... import distributed
from ...errors import AvatarToolError
from ...evaluation.face_likeness import face_model_paths
from ...evaluation.snapshot_pick import pick_by_faces
from ...generators import cache
from ...generators.config import GeneratorConfig, generator_preset
from ...generators.finetune import discriminator_beside
from ...generators.io import load_generator
from ...generators.train_real import GANTrainConfig, kept_snapshots, train_preset, train_real
from ...precision import resolve_precision
from ...proxy.eval_set import write_proxy_set
from ...torch_utils import select_device
from ..config import BuildConfig, real_augment_policy
from ..fingerprint import code_version, file_digest
from ..runner import StageContext
from .progress import gan_progress


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.cfg.real
    if c.generator and c.images:
        raise AvatarToolError("give either --real-generator or --real-images, not both")
    if c.generator:
        path = Path(c.generator).resolve()
        g, meta = load_generator(path)  # fails here, with the loader's message, on a bad file
        d = discriminator_beside(path)
        return {"generator": str(path), "source": "file", "sha256": file_digest(path), "size": g.cfg.size,
                "discriminator": str(d) if d else None, "files": [str(path)]}
    if c.images:
        from ...generators.celebamask import prepare_photo_folder
        photos = distributed.on_main(prepare_photo_folder, Path(c.images), ctx.dir / "photos", size=c.proxy_size,
                                     progress=lambda d, t: ctx.progress(d, t, "photos"))
        source = f"face photos from {c.images}"
    else:
        ctx.progress(0, c.proxy_n, "drawing photo proxy")
        distributed.on_main(write_proxy_set, c.proxy_engine, ctx.dir / "photos", n=c.proxy_n, seed=c.proxy_seed,
                            size=c.proxy_size, role="unlabelled",
                            progress=lambda d, t: ctx.progress(d, t, "drawing photo proxy"))
        photos = ctx.dir / "photos"
        ctx.warn(f"no --real-generator or --real-images: G_real is trained on {c.proxy_n} unlabelled photo-proxy "
                 f"faces drawn here ({c.proxy_engine} painter, photo style), a stand-in for real face photos")
        source = "unlabelled photo proxy"
    gcfg, tcfg, precision = g_real_training(ctx.cfg)
    # keyed by the arithmetic that runs (bf16 and fp32 weights differ), not by the word "auto"
    key, basis = cache.cache_key(photos, gcfg, {**tcfg.to_json(), "precision": precision}, code_version(G_REAL_CODE))
    reuse = _from_cache(ctx, key)
    if reuse is None:
        train_real(photos, ctx.dir / "gan", gcfg, tcfg, device=ctx.cfg.device, progress=gan_progress(ctx))
        if distributed.info().is_main:
            stored = cache.store(key, basis, ctx.dir / "gan", source=str(ctx.run_dir), recipe=proxy_recipe(ctx.cfg))
            reuse = {"reused": False, "key": key, "path": str(stored) if stored else None}
    gan = ctx.dir / "gan"
    pick = distributed.on_main(_pick_snapshot, ctx, gan, tcfg.iters)
    gen = Path(pick.get("weights") or gan / "generator.safetensors")
    # G_avatar's discriminator starts from the one trained with these weights; a kept snapshot has none of its own
    d = discriminator_beside(gen)
    return {"generator": str(gen.resolve()), "discriminator": str(d.resolve()) if d else None,
            "source": source, "photos": str(photos.resolve()), "iters": tcfg.iters,
            "size": gcfg.size, "precision": precision, "cache": reuse, "pick": pick, "samples": str((gan / "samples").resolve()),
            "files": [str(gen.relative_to(ctx.dir)), "gan/stats.jsonl"]}


def g_real_training(cfg: BuildConfig) -> tuple[GeneratorConfig, GANTrainConfig, str]:
    """The generator and training configurations a build trains G_real with, and the arithmetic that runs."""
    c = cfg.real
    tcfg = train_preset(c.train_preset, iters=c.iters, batch_size=c.batch_size, precision=c.precision,
                        keep_every=c.keep_every, lr=c.lr, lr_drop_at=c.lr_drop_at, lr_after=c.lr_after,
                        augment=real_augment_policy(c.augment))
    return generator_preset(c.generator_config), tcfg, resolve_precision(tcfg.precision, select_device(cfg.device))


# the proxy painter's code: the photos a recipe draws change with it
PROXY_CODE = ("toolchain/proxy", "toolchain/engines")


def proxy_recipe(cfg: BuildConfig) -> dict[str, Any] | None:
    """How the build draws G_real's training photos (None: it takes a file or the user's photos)."""
    c = cfg.real
    if c.generator or c.images:
        return None
    return {"painter": c.proxy_engine, "seed": c.proxy_seed, "n": c.proxy_n, "size": c.proxy_size,
            "code": code_version(PROXY_CODE)}


def likely_cached(cfg: BuildConfig) -> Path | None:
    """The cache entry this build's G_real will most likely be restored from, judged before its photos are
    drawn (for the opening estimate; the stage decides by the photos' bytes)."""
    recipe = proxy_recipe(cfg)
    if recipe is None:
        return None
    gcfg, tcfg, precision = g_real_training(cfg)
    return cache.find_by_recipe(recipe, gcfg, {**tcfg.to_json(), "precision": precision}, code_version(G_REAL_CODE))


def _pick_snapshot(ctx: StageContext, gan: Path, iters: int) -> dict[str, Any]:
    """Which weights become G_real (``real.pick``): the kept snapshot whose samples show the most faces, or the
    last weights (asked for, nothing kept, or no face models: said in a warning and in the report)."""
    c = ctx.cfg.real   # real.pick's value was checked with the settings (config.check_config)
    kept = kept_snapshots(gan)
    if c.pick == "last" or not kept:
        why = "real.pick=last" if c.pick == "last" else "the training kept no snapshots (real.keep_every=0)"
        return {"how": "last", "step": iters, "why": why}
    if kept[-1][0] != iters:
        kept.append((iters, gan / "generator.safetensors"))
    try:
        model_for = face_model_paths(ctx.cfg.export.fetch_detector)
        pick = pick_by_faces(kept, c.pick_n, model_for=model_for,
                             progress=lambda d, t: ctx.progress(d, t, "picking the snapshot with the most faces"))
    except AvatarSDKError as exc:
        ctx.warn(f"G_real: the last weights are used, not the snapshot with the most faces: {exc}")
        return {"how": "last", "step": iters, "why": f"face models missing: {exc}"}
    best = pick["best"]
    ctx.progress(1, 1, f"G_real: step {pick['step']} picked, faces in {best['found']}/{best['n']} samples "
                       f"(last weights: {pick['last']['found']}/{pick['last']['n']})")
    return pick


# the source G_real's weights depend on (not G_avatar's finetuning, not the cache itself)
G_REAL_CODE = tuple(f"toolchain/generators/{m}.py" for m in (
    "config", "generator", "layers", "local_generator", "render_net", "discriminator", "encoder", "losses", "diffaugment",
    "train_real", "mask_folder", "io")) + ("toolchain/distributed.py",)


def _from_cache(ctx: StageContext, key: str) -> dict[str, Any] | None:
    """Copy a cached G_real into this run (and say so); None: train it (no entry, a damaged one, or forced)."""
    if ctx.forced:
        return None
    hit, damaged = cache.lookup(key)
    if damaged:
        ctx.warn(damaged)
    if hit is None:
        return None
    if distributed.info().is_main:
        cache.restore(hit, ctx.dir / "gan")
    distributed.barrier()
    ctx.progress(1, 1, f"reused cached G_real {hit.path}")
    return {"reused": True, "key": key, "path": str(hit.path), "trained_by": hit.entry.get("source"),
            "created": hit.entry.get("created")}
