"""The inversion's part-map term at several weights, judged by what the pairs would carry.

    python -m benchmarks inversion-terms RUN [--n 200] [--mask-weights 0,0.1,0.3,1] [--name NAME] [--out DIR]

On a finished build run (its renders, G_avatar, G_real, start codes, inversion settings and the pair measures'
oracle), the first ``--n`` renders are inverted once per weight of the part-map term (``pairs.mask_weight``; 0 is
the paper's image-only inversion), through the same code the pairs stage runs. Per weight: the loss terms; what
G_avatar's reconstruction keeps of the render (hair colour error and hair IoU on the render's mask, glasses
pixels drawn on glasses-free renders); and what the realistic face G_real(w*) carries, unaugmented: the share the
SDK's face finder accepts and the oracle's agreement with each render's vector (label consistency). Minutes per
weight: a screen before a build's pairs stage of half an hour.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


def hair_measures(g, targets, recon, parts: np.ndarray) -> dict[str, float | None]:
    """Hair colour error (mean |RGB| difference in [0, 1] of the hair's mean colour) and hair IoU (G's own
    segmentation against the render's mask), over renders with at least 30 hair pixels."""
    import torch
    names = list(g.cfg.parts)
    if "hair" not in names:
        return {"hair_colour_error": None, "hair_iou": None}
    k = names.index("hair")
    hair = parts == k
    with torch.no_grad():
        drawn = recon.part_probs().argmax(1).numpy() == k
    y = ((targets + 1) / 2).permute(0, 2, 3, 1).numpy()
    x = ((recon.image.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    colour, iou = [], []
    for i in range(len(y)):
        if hair[i].sum() > 30:
            colour.append(np.abs(y[i][hair[i]].mean(0) - x[i][hair[i]].mean(0)).mean())
            iou.append((drawn[i] & hair[i]).sum() / (drawn[i] | hair[i]).sum())
    return {"hair_colour_error": float(np.mean(colour)) if colour else None,
            "hair_iou": float(np.mean(iou)) if iou else None}


def spurious_glasses(g, recon, glasses_free: np.ndarray | None) -> float | None:
    """Mean glasses pixels in G's segmentation of the renders marked glasses-free (None: not measurable)."""
    names = list(g.cfg.parts)
    if glasses_free is None or "glasses" not in names or not glasses_free.any():
        return None
    drawn = recon.part_probs().argmax(1).numpy() == names.index("glasses")
    return float(drawn[glasses_free].sum((1, 2)).mean())


def glasses_free_mask(schema, disc: np.ndarray) -> np.ndarray | None:
    """Which encoded vectors have the option 'none' for a discrete parameter named glasses (None: no such)."""
    for i, p in enumerate(schema.discrete):
        if p.name == "glasses" and "none" in p.options:
            return disc[:, i] == p.options.index("none")
    return None


@dataclass
class Screen:
    """What every weight shares: the build's generators, renders, start codes, settings and oracle."""
    cfg: Any
    g_av: Any
    g_real: Any
    folder: Any
    vectors: list
    perceptual: Any
    init: Any
    oracle: Any
    parts: np.ndarray | None
    continuous: np.ndarray          # the vectors encoded: what the oracle's answers are scored against
    discrete: np.ndarray


def prepare(build, n: int) -> Screen:
    from types import SimpleNamespace
    from toolchain.estimator.io import load_estimator
    from toolchain.generators.io import load_generator
    from toolchain.pipeline.stages.pairs import pairs_config
    from toolchain.production.init_latent import build_init
    from toolchain.production.render_pixels import part_map
    from toolchain.production.perceptual import make_perceptual
    from toolchain.render.folder import RenderFolder
    cfg = pairs_config(SimpleNamespace(cfg=build.cfg, output=build.output))
    g_av, _ = load_generator(build.output("avatar_generator")["generator"])
    g_real, _ = load_generator(build.output("real_generator")["generator"])
    for g in (g_av, g_real):
        g.requires_grad_(False)
    folder = RenderFolder.open(cfg.renders)
    n = min(n, len(folder.vectors))
    perceptual, _ = make_perceptual(cfg.lpips_weights)
    oracle, _ = load_estimator(build.output("pair_measures")["oracle"]["model"], "cpu")
    lut = np.array(g_av.cfg.label_to_part(), np.int64)
    parts = np.stack([part_map(folder.mask_path(i), g_av.cfg.size, lut) for i in range(n)]) \
        if all(folder.mask_path(i) for i in range(n)) else None
    vectors = folder.vectors[:n]
    cont, disc = folder.schema.encode([folder.schema.validate(v) for v in vectors])
    return Screen(cfg, g_av, g_real, folder, vectors, perceptual, build_init(g_av, folder.schema, cfg.init),
                  oracle, parts, cont, disc)


def measure_weight(weight: float, sc: Screen) -> dict[str, Any]:
    import torch
    from toolchain.estimator.predict import predict_arrays
    from toolchain.evaluation.face_likeness import FaceCounter
    from toolchain.evaluation.pair_measures import _agreement
    from toolchain.production.inversion import invert_stream
    from toolchain.production.pairs import inversion_items
    from toolchain.torch_utils import signed_to_uint8
    cfg = replace(sc.cfg, inversion=replace(sc.cfg.inversion, lambda_s=weight))
    n = len(sc.vectors)
    items = list(inversion_items(cfg, sc.folder, sc.vectors, range(n), sc.init, sc.g_av))
    t0 = time.perf_counter()
    done = dict(invert_stream(sc.g_av, sc.perceptual, iter(items), cfg.inversion))
    seconds = time.perf_counter() - t0
    res = [done[i] for i in range(n)]
    codes = torch.stack([r.wplus for r in res])
    targets = torch.stack([it[1] for it in items])
    with torch.no_grad():
        recon = sc.g_av.synthesize(codes, "const")
        faces = signed_to_uint8(sc.g_real.synthesize(codes, "const").image.clamp(-1, 1))
    pc, pd, _ = predict_arrays(sc.oracle, faces, sc.oracle.config.input_size, torch.device("cpu"))
    schema = sc.folder.schema
    with FaceCounter() as fc:
        found = fc.count(list(faces))
    terms = {k: float(np.mean([getattr(r, k) for r in res])) for k in ("loss", "perceptual", "mse", "latent", "semantic")}
    return {"mask_weight": weight, "seconds": round(seconds, 1), "terms": terms,
            **(hair_measures(sc.g_av, targets, recon, sc.parts) if sc.parts is not None else {}),
            "glasses_px_on_glasses_free": spurious_glasses(sc.g_av, recon, glasses_free_mask(schema, sc.discrete)),
            "faces": found.to_json(), "label_consistency": _agreement(schema, pc, pd, sc.continuous, sc.discrete),
            "pictures": {"renders": signed_to_uint8(targets[:12]), "reconstructions":
                         signed_to_uint8(recon.image[:12].clamp(-1, 1)), "faces": faces[:12]}}


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import commit
    from benchmarks._report import RESULTS, load_note, write_report_with_figure
    from benchmarks.suite.common import BuildRun, image_rows_figure
    from sdk_python.native_logs import silence_native_logs
    silence_native_logs()
    ap = argparse.ArgumentParser(prog="python -m benchmarks inversion-terms", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished build run (with its pair measures)")
    ap.add_argument("--n", type=int, default=200, help="renders inverted per weight")
    ap.add_argument("--mask-weights", default="0,0.1,0.3,1", help="comma-separated weights of the part-map term")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="", help="suffix of the output files")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    try:
        weights = [float(w) for w in a.mask_weights.split(",") if w.strip()]
    except ValueError:
        raise SystemExit(f"error: --mask-weights takes numbers separated by commas, got {a.mask_weights!r}") from None
    from toolchain.errors import AvatarToolError
    from toolchain.torch_utils import configure_cpu_math
    configure_cpu_math(a.threads)
    command = "python -m benchmarks inversion-terms " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))
    load, t0 = os.getloadavg()[0], time.perf_counter()
    try:
        build = BuildRun.open(a.run)
        screen = prepare(build, a.n)
        results = []
        for w in weights:
            print(f"[inversion-terms] mask weight {w:g} ({time.perf_counter() - t0:.0f} s)", flush=True)
            results.append(measure_weight(w, screen))
    except AvatarToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

    def f(x: Any, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"
    discrete = list(results[0]["label_consistency"]["accuracy"])
    rows = [[f"{r['mask_weight']:g}", f"{r['seconds']:.0f}", f(r["terms"]["perceptual"], 4), f(r["terms"]["mse"], 4),
             f(r["terms"]["semantic"]), f(r.get("hair_colour_error"), 4), f(r.get("hair_iou")),
             f(r["glasses_px_on_glasses_free"], 1), f"{r['faces']['found']}/{r['faces']['n']}",
             f(r["label_consistency"].get("mean_accuracy")),
             *(f(r["label_consistency"]["accuracy"][p], 2) for p in discrete)] for r in results]
    stem = "inversion_terms" + (f"_{a.name}" if a.name else "")
    held = build.output("pair_measures")["label_consistency"]["heldout"].get("mean_accuracy")
    data = {"run": build.describe(), "n": a.n, "threads": a.threads, "command": command.strip(), "commit": commit(),
            "oracle_heldout_mean_accuracy": held,
            "weights": [{k: v for k, v in r.items() if k != "pictures"} for r in results]}
    stamp = (f"Run `{a.run}` ({build.cfg.engine}, preset {build.cfg.preset}), code {commit()}, "
             f"{load_note(load)}, {time.perf_counter() - t0:.0f} s; command: `{command.strip()}`")
    notes = (f"The first {a.n} renders of the run, inverted per weight with the build's start codes and inversion "
             f"settings ({build.cfg.pairs.steps} steps, {build.cfg.pairs.batch} slots, pairs.precision "
             f"{build.cfg.pairs.precision}), {a.threads} torch threads. `s`: seconds of inversion. Perceptual / MSE / "
             "part CE: the terms at the final codes (part CE is evaluated only when its weight is above 0). Hair "
             "colour error and IoU: G_avatar's reconstruction against the render and its mask; glasses px: glasses "
             "pixels G_avatar's segmentation draws on glasses-free renders. Faces: the SDK's face finder on "
             "G_real(w*), unaugmented. Label consistency: the build's oracle reads G_real(w*); its mean accuracy "
             f"on the held-out photos (the ceiling) is {f(held)}.")
    fig = image_rows_figure([("renders", results[0]["pictures"]["renders"])]
                            + [row for r in results for row in
                               ((f"G_avatar, weight {r['mask_weight']:g}", r["pictures"]["reconstructions"]),
                                (f"G_real, weight {r['mask_weight']:g}", r["pictures"]["faces"]))])
    write_report_with_figure(stem, data, ["weight", "s", "perceptual", "MSE", "part CE", "hair colour err", "hair IoU",
                                          "glasses px (free)", "faces", "label consistency",
                                          *(f"LC {p}" for p in discrete)], rows, notes, a.out, stamp, fig,
                             "renders, then per weight G_avatar's reconstruction and G_real's face")


if __name__ == "__main__":
    main()
