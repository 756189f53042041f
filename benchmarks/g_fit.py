"""Generator configurations side by side on the fitting probe: which can draw its own training photos, how fast?

    python -m benchmarks g-fit [--engine alter] [--size 64] [--steps 1000] [--photos 64] [--gen-set FIELD=VALUE ...]
        [--variant NAME:FIELD=VALUE,FIELD=VALUE ...] [--run DIR] [--name NAME] [--out DIR]

A GAN that draws no faces may lack the discriminator's signal or the capacity to draw them at all within its
steps. The fitting probe (toolchain/generators/fit_probe.py) takes the second question alone: a fresh generator
and one free W+ code per photo are fitted by regression to a few proxy photos and their masks. This benchmark
runs it for several variants of the ``tiny`` generator (``--gen-set`` applies to all, ``--variant`` adds a
variant's own fields) on the same photos and seed, and gives per checkpoint the reconstruction error, each part's
mask IoU and the faces the SDK's face finder finds in the fits, next to the photos' own count at that size. A
variant's result is kept in the run folder, so a rerun only fits the variants still missing. Minutes per
variant, so a screen before a GAN run of half an hour or more.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

CHECKPOINTS = (250, 500)


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """``NAME:FIELD=VALUE,FIELD=VALUE`` (or a bare ``NAME``) -> (name, ["FIELD=VALUE", ...])."""
    name, _, fields = spec.partition(":")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"error: --variant '{spec}' needs a name of letters, digits, - or _ before the ':' "
                         "(e.g. --variant wide:local_channel=64)")
    return name, [f for f in fields.split(",") if f]


def fit_variant(name: str, gen_sets: dict[str, Any], size: int, channel_base: int, photos_dir: Path, n: int,
                steps: int, cache: Path) -> dict[str, Any]:
    """Fit one variant (or read its kept result when the same variant, photos and steps were fitted before)."""
    import numpy as np
    from toolchain.atomic_io import atomic_write_bytes, atomic_write_json
    from toolchain.evaluation.face_likeness import FaceCounter
    from benchmarks.g_real_size import tiny_config
    from toolchain.generators.fit_probe import fit_photos
    from toolchain.generators.generator import SemanticGenerator
    from toolchain.generators.mask_folder import load_mask_folder
    gcfg = tiny_config(size, channel_base, gen_sets)
    key = {"generator": gcfg.to_json(), "photos": n, "steps": steps}
    kept, pics = cache / f"{name}.json", cache / f"{name}.npz"
    if kept.exists() and pics.exists():
        old = json.loads(kept.read_text())
        if old.get("key") == key:
            with np.load(pics) as z:
                return {**old, "fits": z["fits"], "photos": z["photos"], "reused": True}
    images, masks = load_mask_folder(photos_dir, gcfg, limit=n)
    checkpoints = fit_photos(gcfg, images, masks, steps, at=tuple(s for s in CHECKPOINTS if s < steps))
    with FaceCounter() as fc:
        photo_faces = fc.count(images)
        found = [fc.count(cp.images) for cp in checkpoints]
    result = {"key": key, "name": name, "overrides": gen_sets,
              "params": sum(p.numel() for p in SemanticGenerator(gcfg).parameters()),
              "photos_faces": photo_faces.to_json(),
              "checkpoints": [{"step": cp.step, "seconds": round(cp.seconds, 1), "image_l1": cp.image_l1,
                               "part_iou": {k: (None if v != v else v) for k, v in cp.part_iou.items()},
                               "faces": f.to_json()} for cp, f in zip(checkpoints, found)]}
    buf = io.BytesIO()
    np.savez_compressed(buf, fits=checkpoints[-1].images[:8], photos=images[:8])
    atomic_write_bytes(pics, buf.getvalue())
    atomic_write_json(kept, result)
    return {**result, "fits": checkpoints[-1].images[:8], "photos": images[:8], "reused": False}


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import commit
    from benchmarks._report import write_report_with_figure
    from benchmarks.g_real_size import generator_arguments, parse_sets
    from sdk_python.native_logs import silence_native_logs
    silence_native_logs()
    ap = argparse.ArgumentParser(prog="python -m benchmarks g-fit", description=__doc__.splitlines()[0])
    generator_arguments(ap, "is fitted", "g-fit")
    ap.add_argument("--steps", type=int, default=1000, help="fitting steps (batch 16)")
    ap.add_argument("--photos", type=int, default=64, help="proxy photos fitted")
    ap.add_argument("--variant", dest="variants", action="append", default=[],
                    help="NAME:FIELD=VALUE,FIELD=VALUE, a variant with its own generator overrides on top of "
                         "--gen-set (repeatable; default: one variant 'base' without any)")
    a = ap.parse_args(argv)
    common = parse_sets(a.gen_sets)
    variants = [parse_variant(v) for v in (a.variants or ["base"])]
    names = [v[0] for v in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"error: --variant names must differ, got {names}")
    stem = f"g_fit_{a.size}px" + (f"_{a.name}" if a.name else "")
    run = a.run or Path("runs") / stem.replace("_", "-")
    command = "python -m benchmarks g-fit " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))

    import torch
    from toolchain.torch_utils import configure_cpu_math
    configure_cpu_math(a.threads)
    from benchmarks.suite.common import image_rows_figure
    from toolchain.errors import AvatarToolError
    from toolchain.proxy.eval_set import write_proxy_set

    load, t0 = os.getloadavg()[0], time.perf_counter()
    results = []
    try:
        photos = write_proxy_set(a.engine, run / "photos", n=a.photos, seed=0, size=128, role="unlabelled")
        for name, fields in variants:
            sets = {**common, **parse_sets(fields)}
            print(f"[g-fit] {name}: fitting {a.steps} steps ({time.perf_counter() - t0:.0f} s)", flush=True)
            results.append(fit_variant(name, sets, a.size, a.channel_base, run / "photos", a.photos, a.steps,
                                       run / "variants"))
    except AvatarToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

    parts = [p for p in results[0]["checkpoints"][0]["part_iou"] if p != "background"]
    rows = []
    for r in results:
        label = r["name"] + "".join(f", {k}={v}" for k, v in r["overrides"].items() if k not in common)
        pf = r["photos_faces"]
        for cp in r["checkpoints"]:
            iou = cp["part_iou"]
            rows.append([label, f"{r['params']:,}", cp["step"], f"{cp['seconds']:.0f}", f"{cp['image_l1']:.4f}",
                         *("-" if iou[p] is None else f"{iou[p]:.2f}" for p in parts),
                         f"{cp['faces']['found']}/{cp['faces']['n']}", f"{pf['found']}/{pf['n']}"])
    data = {"engine": a.engine, "size": a.size, "channel_base": a.channel_base, "steps": a.steps,
            "photos": {"n": a.photos, "set_id": photos.set_id}, "common_overrides": common,
            "variants": [{k: v for k, v in r.items() if k not in ("fits", "photos")} for r in results],
            "threads": a.threads, "run": str(run), "command": command.strip(), "commit": commit()}
    stamp = (f"Code {commit()}, load average {load:.2f} at start, {time.perf_counter() - t0:.0f} s for this call "
             f"({sum(not r['reused'] for r in results)} of {len(results)} variants fitted now, the rest read from the "
             f"run folder); command: `{command.strip()}`")
    common_txt = ", ".join(f"{k}={v}" for k, v in common.items()) or "no overrides"
    notes = (f"Each variant: a fresh `tiny` generator at {a.size} px ({common_txt}, then the variant's own fields) and "
             f"one free W+ code per photo, fitted by regression (image L1 + a part-weighted mask cross-entropy; Adam, "
             f"batch 16, seed 0, {a.threads} torch threads) to the same {a.photos} unlabelled {a.engine} proxy photos "
             f"(set {photos.set_id}). `s`: seconds of fitting up to that step. Part IoU: the fit's segmentation "
             "against the photos' masks. Faces: the SDK's face finder (upscaled to 256 px) on the fits and on the "
             "photos at this size (what a perfect fit would reach). No discriminator and no prior: what a variant "
             "cannot fit here, a GAN of that size will not sample after as many steps.")
    fig = image_rows_figure([("photos", results[0]["photos"])] + [(f"{r['name']}, step {a.steps}", r["fits"])
                                                                  for r in results])
    write_report_with_figure(stem, data, ["variant", "params", "step", "s", "image L1", *(f"IoU {p}" for p in parts),
                                          "faces in fits", "faces in photos"], rows, notes, a.out, stamp, fig,
                             f"photos and each variant's fits after {a.steps} steps")


if __name__ == "__main__":
    main()
