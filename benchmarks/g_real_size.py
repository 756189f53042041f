"""G_real at a chosen size on the photo proxy: does it make faces for the steps it trains, and at what cost?

    python -m benchmarks g-real-size [--engine alter] [--size 64] [--steps 2250] [--photos 3000]
        [--channel-base 2048] [--preset tiny_official] [--set FIELD=VALUE ...] [--gen-set FIELD=VALUE ...]
        [--run DIR] [--name NAME] [--out DIR]

The build trains G_real at 32 px, where even the proxy photos themselves give the face finder little to find
(``face_blur``: 31 of 100 at 32 px, 81 at 64 px). This benchmark trains the ``tiny`` generator at another size
on its own unlabelled proxy photos (drawn here, 128 px), then measures face-likeness as the build's pairs
section does: the share of 200 G_real samples in which the SDK's face finder finds a face, next to 200
held-out proxy photos box-reduced to the same size (the ceiling) and noise (the floor), and a part census (which
parts the samples draw and how their colours vary, next to the held-out photos' masks). The picture is the
G_real samples over training steps (same latents in every row). ``--set`` overrides training-preset fields,
``--gen-set`` generator-config fields (e.g. ``coarse_size=32``).

The run folder resumes: a rerun trains only the steps still missing, and the table says how many steps this
call trained; the training time is then read from the run's own log (its it/s per logged interval).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HELDOUT_SEED = 7      # the held-out photos' set seed; the training photos use seed 0, a disjoint stream
N_MEASURE = 200


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` training-preset overrides, read as the build's ``--set`` values are (YAML scalars)."""
    from toolchain.errors import AvatarToolError
    from toolchain.pipeline.config import parse_settings
    try:
        return parse_settings(items, form="FIELD=VALUE", example="r1_img=0.1")
    except AvatarToolError as exc:
        raise SystemExit(f"error: {exc}") from None


def logged_steps(rows: list[dict[str, Any]]) -> int:
    """The last step of a run folder's log: the log is saved with each snapshot, so it is the step a resume
    starts from (0 without a log)."""
    return int(rows[-1]["step"]) if rows else 0


def logged_train_seconds(rows: list[dict[str, Any]]) -> float | None:
    """Seconds the logged steps took: each logged interval's steps over its it/s (None without a log)."""
    if not rows:
        return None
    total, prev = 0.0, 0
    for row in rows:
        if row.get("it_per_s"):
            total += (row["step"] - prev) / row["it_per_s"]
        prev = row["step"]
    return total


def read_log(gdir: Path) -> list[dict[str, Any]]:
    from toolchain.atomic_io import read_jsonl
    path = gdir / "stats.jsonl"
    return read_jsonl(path) if path.exists() else []


def faces_over_steps(samples_dir: Path, size: int) -> list[dict[str, Any]]:
    """Faces found in the EMA samples of each saved sample grid (saved whether or not the weights are kept)."""
    from PIL import Image
    from toolchain.evaluation.face_likeness import FaceCounter
    from toolchain.generators.grids import sample_grid_images
    rows = []
    with FaceCounter() as fc:
        for f in sorted(samples_dir.glob("step_*.png")):
            with Image.open(f) as im:
                images = sample_grid_images(np.asarray(im.convert("RGB")), size)
            rows.append({"step": int(f.stem.split("_")[1]), **fc.count(images).to_json()})
    return rows


def steps_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No sample grids were saved, so there are no faces over steps."
    n = rows[0]["n"]
    return "\n".join([f"Faces over steps: the face finder on the {n} EMA samples of each saved sample grid (the same "
                      "latents at every step; a grid is saved at every sample step, kept weights or not).", "",
                      "| step | " + " | ".join(str(r["step"]) for r in rows) + " |",
                      "|---|" + "---|" * len(rows),
                      "| faces | " + " | ".join(f"{r['found']}/{r['n']}" for r in rows) + " |"])


def spread_cell(v: float | None) -> str:
    """A colour spread as a table cell ("-" when the part was drawn in fewer than 2 images)."""
    return "-" if v is None else f"{v:.0f}"


KEPT_PARTS = ("hair", "skin", "glasses", "clothes")   # the parts whose colours the pairs must carry


def kept_over_steps(gdir: Path, n: int) -> list[dict[str, Any]]:
    """For each snapshot the run kept (``keep_every``): the faces in ``n`` samples, scored as a build's
    ``real.pick=faces`` scores them (its own seed), and the part census of ``n`` samples. Shows whether faces
    and colour variety rise and fall together over training."""
    from toolchain.evaluation.part_census import census, generator_parts
    from toolchain.evaluation.snapshot_pick import pick_by_faces
    from toolchain.generators.train_real import kept_snapshots
    snaps = kept_snapshots(gdir)
    if not snaps:
        return []
    scores = pick_by_faces(snaps, n=n)["scores"]
    rows = []
    for (step, path), score in zip(snaps, scores):
        img, parts, names = generator_parts(path, n)
        rows.append({"step": step, "faces": {k: score[k] for k in ("found", "n")},
                     "parts": {k: v for k, v in census(img, parts, names)["parts"].items() if k in KEPT_PARTS}})
    return rows


def kept_markdown(rows: list[dict[str, Any]], photos: dict[str, Any]) -> str:
    if not rows:
        return "The run kept no snapshots (`--set keep_every=N` keeps them), so there is no table of them."
    n = rows[0]["faces"]["n"]
    names = [k for k in KEPT_PARTS if k in rows[0]["parts"]]
    lines = [f"Kept snapshots: faces found in {n} samples of each (the seed a build's `real.pick=faces` scores "
             f"with), and the colour spread of each part in {n} samples (the photos' in the last column).", "",
             "| step | faces | " + " | ".join(f"{k} spread" for k in names) + " |", "|---|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r['step']} | {r['faces']['found']}/{r['faces']['n']} | "
                     + " | ".join(spread_cell(r["parts"][k]["colour_spread"]) for k in names) + " |")
    lines.append("| photos | - | " + " | ".join(spread_cell(photos["parts"][k]["colour_spread"]) for k in names) + " |")
    return "\n".join(lines)


def census_markdown(parts: dict[str, Any]) -> str:
    """The part census of G_real's samples next to the held-out photos' masks, as a markdown table."""
    g, p = parts["g_real"], parts["photos"]
    lines = [f"Parts drawn ({g['n']} G_real samples, argmax of their final segmentation; {p['n']} held-out photos' "
             f"masks at the same size; a part counts when it holds >= {g['min_share']:.1%} of the pixels). Colour "
             "spread: over the images where the part is drawn, the standard deviation of its mean colour (0-255, "
             "averaged over R, G, B).", "",
             "| part | G_real drawn | photos drawn | G_real colour spread | photos colour spread |", "|---|---|---|---|---|"]
    for name, gv in g["parts"].items():
        pv = p["parts"][name]
        lines.append(f"| {name} | {gv['present']:.0%} | {pv['present']:.0%} | {spread_cell(gv['colour_spread'])} | "
                     f"{spread_cell(pv['colour_spread'])} |")
    return "\n".join(lines)


def tiny_config(size: int, channel_base: int, overrides: dict[str, Any]):
    """The ``tiny`` generator at ``size`` px; ``overrides`` (``--gen-set``, a variant's fields) win over
    ``channel_base``. The size comes from ``--size`` alone: the faces are counted at that size."""
    from toolchain.generators.config import generator_preset
    if "size" in overrides:
        raise SystemExit("error: set the generator size with --size, not as a generator field")
    return generator_preset("tiny", **{"size": size, "channel_base": channel_base, **overrides})


def generator_arguments(ap: argparse.ArgumentParser, photos_role: str, run_prefix: str) -> None:
    """The options g-real-size and g-fit share: which photos, which generator, where the run and results go."""
    from benchmarks._report import RESULTS
    ap.add_argument("--engine", default="alter", help=f"built-in engine whose photo proxy {photos_role}")
    ap.add_argument("--size", type=int, default=64, help="generator output size in px (power of two)")
    ap.add_argument("--channel-base", type=int, default=2048, help="render net / D channels: min(64, base // px)")
    ap.add_argument("--gen-set", dest="gen_sets", action="append", default=[],
                    help="FIELD=VALUE generator config override, e.g. coarse_size=32 (repeatable)")
    ap.add_argument("--run", type=Path, default=None, help=f"run folder (default: runs/{run_prefix}-<size>px[-NAME])")
    ap.add_argument("--name", default="", help="suffix of the result files and the default run folder")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: benchmarks/results/)")


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import commit
    from benchmarks._report import write_report
    from sdk_python.native_logs import silence_native_logs
    silence_native_logs()
    ap = argparse.ArgumentParser(prog="python -m benchmarks g-real-size", description=__doc__.splitlines()[0])
    generator_arguments(ap, "G_real learns", "g-real")
    ap.add_argument("--steps", type=int, default=2250, help="training steps (batch 8)")
    ap.add_argument("--photos", type=int, default=3000, help="unlabelled proxy photos to train on")
    ap.add_argument("--preset", default="tiny_official", help="training preset (toolchain/generators/train_real.py)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="FIELD=VALUE preset override (repeatable)")
    ap.add_argument("--measure-n", type=int, default=N_MEASURE, help="samples, held-out photos and noise images counted")
    a = ap.parse_args(argv)
    sets, gen_sets = parse_sets(a.sets), parse_sets(a.gen_sets)
    stem = f"g_real_size_{a.size}px" + (f"_{a.name}" if a.name else "")
    run = a.run or Path("runs") / stem.replace("_", "-")
    command = "python -m benchmarks g-real-size " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))

    import torch
    from toolchain.torch_utils import configure_cpu_math
    configure_cpu_math(a.threads)
    from toolchain.atomic_io import save_png_atomic
    from toolchain.errors import AvatarToolError
    from benchmarks.suite.pair_measures import _share
    from toolchain.evaluation.face_likeness import folder_images
    from toolchain.evaluation.pair_measures import face_likeness, steps_strip
    from toolchain.evaluation.part_census import census, generator_parts
    from toolchain.generators.mask_folder import load_mask_folder
    from toolchain.generators.train_real import train_preset, train_real
    from toolchain.proxy.eval_set import write_proxy_set

    load, t0 = os.getloadavg()[0], time.perf_counter()
    try:
        gcfg = tiny_config(a.size, a.channel_base, gen_sets)
        tcfg = train_preset(a.preset, iters=a.steps, **sets)
        photos = write_proxy_set(a.engine, run / "photos", n=a.photos, seed=0, size=128, role="unlabelled")
        heldout = write_proxy_set(a.engine, run / "heldout", n=a.measure_n, seed=HELDOUT_SEED, size=128, role="unlabelled")
        gdir = run / "g_real"
        done_before = logged_steps(read_log(gdir))

        def progress(stage: str, step: int, total: int, stats: dict) -> None:
            if step % 250 == 0 or step == total:
                print(f"[g-real-size] {stage} step {step}/{total} ({time.perf_counter() - t0:.0f} s)", flush=True)

        t_train = time.perf_counter()
        result = train_real(run / "photos", gdir, gcfg, tcfg, progress=progress)
        train_wall = time.perf_counter() - t_train
        fl = face_likeness(gdir / "generator.safetensors", None, folder_images(run / "heldout", a.measure_n), a.size,
                           n=a.measure_n)
        g_img, g_parts, part_names = generator_parts(gdir / "generator.safetensors", a.measure_n)
        h_img, h_parts = load_mask_folder(run / "heldout", gcfg, limit=a.measure_n)
        parts = {"g_real": census(g_img, g_parts, part_names), "photos": census(h_img, h_parts, part_names)}
        over_steps = faces_over_steps(gdir / "samples", a.size)
        kept = kept_over_steps(gdir, a.measure_n)
    except AvatarToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

    steps_done = int(result["steps_done"])
    logged = logged_train_seconds(read_log(gdir))
    trained_now = steps_done - min(done_before, steps_done)
    of_ceiling = fl["g_real_vs_ceiling"]
    strip = steps_strip(gdir / "samples", a.size)
    a.out.mkdir(parents=True, exist_ok=True)
    if strip is not None:
        save_png_atomic(a.out / f"{stem}.png", strip)
    recipe = a.preset + "".join(f", {k}={v}" for k, v in {**gen_sets, **sets}.items())
    rows = [[a.size, a.channel_base, recipe, steps_done, trained_now,
             f"{logged:.0f}" if logged is not None else "-", _share(fl["g_real"]), _share(fl["ceiling"]),
             _share(fl["floor"]), "-" if of_ceiling is None else f"{of_ceiling:.0%}"]]
    data = {"engine": a.engine, "size": a.size, "channel_base": a.channel_base, "preset": a.preset, "overrides": sets,
            "generator_overrides": gen_sets, "generator": gcfg.to_json(),
            "steps": steps_done, "steps_trained_now": trained_now, "train_s_logged": logged,
            "train_s_wall_this_call": round(train_wall, 1), "photos": {"n": a.photos, "set_id": photos.set_id},
            "heldout": {"n": a.measure_n, "seed": HELDOUT_SEED, "set_id": heldout.set_id},
            "g_real": fl["g_real"], "ceiling": fl["ceiling"], "floor": fl["floor"], "of_ceiling": of_ceiling,
            "part_census": parts, "faces_over_steps": over_steps, "kept_snapshots": kept,
            "run": str(run), "command": command.strip(), "commit": commit()}
    stamp = (f"Code {commit()}, load average {load:.2f} at start, {time.perf_counter() - t0:.0f} s for this call; "
             f"command: `{command.strip()}`")
    notes = (f"G_real: the `tiny` generator at {a.size} px (local generators on a {gcfg.coarse_size}x{gcfg.coarse_size} "
             f"grid, Fourier features up to 2^{gcfg.n_freqs - 1}) trained on {a.photos} unlabelled {a.engine} proxy photos "
             f"(set {photos.set_id}), batch {tcfg.batch_size}. `trained now`: steps this call trained (the rest were "
             "resumed from the run folder); `train s`: the time the run's log gives for all its steps. "
             f"Faces found: {a.measure_n} G_real samples (truncation 1); the ceiling is {a.measure_n} held-out proxy photos "
             f"(set {heldout.set_id}) box-reduced to {a.size} px, the floor noise images of that size; every image is "
             "upscaled to 256 px for the SDK's face finder. The issue's targets: >= 50 % of the ceiling (smoke), "
             ">= 80 % (cpu).")
    j, m = write_report(stem, data, ["size px", "channel base", "recipe", "steps", "trained now", "train s",
                                     "G_real faces", "ceiling", "floor", "of ceiling"], rows, notes,
                        out_dir=a.out, stamp=stamp)
    with open(m, "a") as f:
        f.write("\n" + census_markdown(parts) + "\n\n" + steps_markdown(over_steps) + "\n\n"
                + kept_markdown(kept, parts["photos"]) + "\n")
        if strip is not None:
            f.write(f"\n![G_real samples over steps]({stem}.png)\n")
    print(m.read_text())
    print(f"wrote {j}, {m}")


if __name__ == "__main__":
    main()
