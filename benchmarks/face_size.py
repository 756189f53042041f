"""How small may a face be? The estimator's answers on a face shrunk to N px against its answers at full size.

    python -m benchmarks.face_size BUNDLE [--n 24] [--out DIR]

Photo-style proxy faces of the bundle's engine (labelled: the vector they were drawn from is known) are
shrunk so the detector box is about N px, pasted into a 480 px grey frame, and estimated with the SDK
defaults. Per size: how often a face is still found, how many discrete parameters agree with the answer
on the full-size photo, and the accuracy against the drawn vector. The SDK's ``min_face_size`` (faces
below it raise ``FaceTooSmallError``) and the quality warning's ``min_size_px`` are read off this table.
Writes ``results/face_size.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = (16, 24, 32, 48, 64, 96)


def main(argv: list[str] | None = None) -> None:
    from benchmarks._report import RESULTS, write_report
    from sdk_python import AvatarEstimator, AvatarSDKError
    from sdk_python.native_logs import silence_native_logs
    silence_native_logs()
    ap = argparse.ArgumentParser(prog="python -m benchmarks.face_size", description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--n", type=int, default=24, help="proxy faces (default 24)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    import warnings
    warnings.simplefilter("ignore")
    from toolchain.engines.registry import create_engine
    from toolchain.proxy import render_photo
    with AvatarEstimator.create_from_bundle(a.bundle, min_face_size=1, color_order="rgb") as est:
        engine = create_engine(est.schema["engine"])
        discrete = [p["name"] for p in est.schema["params"] if p["kind"] == "discrete"]
        vectors = engine.sample(a.n, 321)
        stats = {s: {"found": 0, "agree": [], "acc": []} for s in SIZES}
        ref_acc = []
        for i, v in enumerate(vectors):
            img, _ = render_photo(engine, v, 5000 + i, 256)
            try:
                ref = est.estimate(img)
            except AvatarSDKError:
                continue
            ref_acc.append(np.mean([ref.vector[k] == v[k] for k in discrete]))
            box = min(ref.face.box.width, ref.face.box.height)
            for s in SIZES:
                k = s / box
                small = Image.fromarray(img).resize((max(8, round(256 * k)),) * 2, Image.LANCZOS)
                frame = Image.new("RGB", (480, 480), (128, 128, 128))
                frame.paste(small, ((480 - small.width) // 2, (480 - small.height) // 2))
                try:
                    r = est.estimate(np.asarray(frame))
                except AvatarSDKError:
                    continue
                stats[s]["found"] += 1
                stats[s]["agree"].append(np.mean([r.vector[k] == ref.vector[k] for k in discrete]))
                stats[s]["acc"].append(np.mean([r.vector[k] == v[k] for k in discrete]))
    n = len(ref_acc)
    rows = [[s, f"{st['found']}/{n}", f"{np.mean(st['agree']):.2f}" if st["agree"] else "-",
             f"{np.mean(st['acc']):.2f}" if st["acc"] else "-"] for s, st in stats.items()]
    rows.append(["full size (~90 px in 256)", f"{n}/{n}", "1.00", f"{np.mean(ref_acc):.2f}"])
    command = "python -m benchmarks.face_size " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report("face_size", {"bundle": str(a.bundle), "stats": {str(k): v for k, v in stats.items()},
                               "reference_accuracy": ref_acc, "command": command},
                 ["face px", "found", "agreement with full size", "accuracy vs drawn vector"], rows,
                 notes=f"{n} photo-style proxy faces of the bundle's engine; "
                       "discrete parameters only; SDK defaults except min_face_size=1. Agreement: share of discrete "
                       "parameters equal to the full-size answer.",
                 out_dir=a.out, stamp=f"Command: `{command}`; load average {os.getloadavg()[0]:.2f} at the end")
    print((a.out / "face_size.md").read_text())


if __name__ == "__main__":
    main()
