"""What the pairs carry, measured apart from the estimator: face-likeness of G_real's samples and of the
pairs' faces (between noise and held-out photos), label consistency (an oracle trained on labelled proxy
photos reads the pairs' faces), and the generators' sample grids over training steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sdk_python.errors import AvatarSDKError

from ...atomic_io import atomic_write_json, save_png_atomic
from ...estimator.train import train
from ...evaluation.evaluate import load_labelled_set
from ...evaluation.face_likeness import face_model_paths, folder_images
from ...evaluation.pair_measures import face_likeness, label_consistency, steps_strip
from ...proxy.eval_set import write_proxy_set
from ...proxy.oracle import ORACLE_SEED_OFFSET, oracle_dataset
from ..runner import StageContext
from .progress import train_progress
from .train import train_config

CEILING_SEED_OFFSET = 104_729    # held-out proxy photos: never the seed G_real's photos were drawn with


def _ceiling_photos(ctx: StageContext) -> tuple[list, str]:
    """Photos like G_real's own, which it never saw. A G_real file's photos are unknown: it gets the photo proxy
    drawn as the offline default's are (at ``real.proxy_size``, reduced to G_real's size), not the held-out set,
    which is drawn at ``eval.size`` and whose painter grain at 64 px hides faces (42 of 200 found vs 158)."""
    c = ctx.cfg.real
    if c.images:
        held = load_labelled_set(ctx.output("heldout")["set"])
        from PIL import Image
        import numpy as np
        photos = [np.asarray(Image.open(p).convert("RGB")) for p, _ in held.items[:ctx.cfg.eval.measure_n]]
        return photos, "the held-out set's photos (G_real's own training photos are not at hand)"
    d = ctx.dir / "ceiling_photos"
    n = ctx.cfg.eval.measure_n
    write_proxy_set(c.proxy_engine, d, n=n, seed=c.proxy_seed + CEILING_SEED_OFFSET, size=c.proxy_size, role="unlabelled")
    note = f"{n} held-out photo-proxy faces ({c.proxy_engine} painter at {c.proxy_size} px, a seed G_real never saw)"
    if c.generator:
        note += "; G_real is a given file whose training photos are unknown: these are drawn as the offline default's are"
    return folder_images(d), note


def run(ctx: StageContext) -> dict[str, Any]:
    real, pairs, heldout = ctx.output("real_generator"), ctx.output("pairs"), ctx.output("heldout")
    size = int(real["size"])
    out: dict[str, Any] = {"files": ["measures.json"]}
    ctx.progress(0, 3, "face-likeness")
    try:
        model_for = face_model_paths(ctx.cfg.export.fetch_detector)
    except AvatarSDKError as exc:
        ctx.warn(f"face-likeness not measured: {exc}")
        out["face_likeness"] = None
    else:
        photos, ceiling_note = _ceiling_photos(ctx)
        out["face_likeness"] = {**face_likeness(real["generator"], pairs["dataset"], photos, size,
                                                n=ctx.cfg.eval.measure_n, model_for=model_for),
                                "ceiling_photos": ceiling_note}

    if heldout.get("kind") == "photo-proxy":
        ctx.progress(1, 3, "oracle: labelled proxy photos")
        cfg = ctx.cfg
        n = oracle_dataset(cfg.engine, ctx.dir / "oracle", n=cfg.render.n, seed=cfg.eval.seed + ORACLE_SEED_OFFSET,
                           size=cfg.render.size)
        # the estimator's recipe and epochs over the oracle's own photos (fewer samples seen than the estimator's
        # pairs: a build-time measure; the ablation trains a budget-matched oracle when this one is not)
        tc = train_config(ctx)
        summary = train([ctx.dir / "oracle" / "dataset"], ctx.dir / "oracle" / "train", tc,
                        backbone_weights=cfg.train.backbone_weights, device=cfg.device,
                        progress=train_progress(ctx, "oracle"))
        model = ctx.dir / "oracle" / "train" / "estimator.pt"
        ctx.progress(2, 3, "label consistency")
        out["label_consistency"] = label_consistency(model, pairs["dataset"], heldout["set"], n=3 * ctx.cfg.eval.measure_n)
        out["oracle"] = {"model": str(model.resolve()), "dataset": str((ctx.dir / "oracle" / "dataset").resolve()),
                         "n": n, "epochs": summary["epochs_done"], "samples_seen": n * summary["epochs_done"]}
        out["files"].append("oracle/train/estimator.pt")
    else:
        out["label_consistency"] = None
        out["label_consistency_note"] = ("no labelled photo proxy for this engine (the face painter draws only the "
                                         "built-in engines): face-likeness only")

    for name, samples in (("g_real_steps.png", Path(real.get("samples") or Path(real["generator"]).parent / "samples")),
                          ("g_avatar_steps.png", Path(ctx.output("avatar_generator")["generator"]).parent / "samples")):
        strip = steps_strip(samples, size)
        if strip is not None:
            save_png_atomic(ctx.dir / name, strip)
            out[name.split(".")[0]] = str((ctx.dir / name).resolve())
    atomic_write_json(ctx.dir / "measures.json", out)
    ctx.progress(3, 3, "done")
    return out
