"""Crop robustness and backend agreement for the SDK, with a trained estimator.

1. Real photos shipped in installed packages (scikit-image's astronaut, matplotlib's grace_hopper):
   detection -> crop -> estimate with every available backend/precision; discrete agreement with the
   first backend (onnxruntime fp32).
2. Crop robustness: photo-proxy faces (the estimator's evaluation domain) pasted at random positions
   and scales into larger cluttered scenes; per-parameter agreement of the estimate with the estimate
   on the pre-aligned image (the proxy image as drawn, resized whole: detection='none').

    python benchmarks/sdk_crop_robustness.py --model runs/<run>/export/estimator.onnx -n 100

Writes benchmarks/results/sdk_crop_robustness.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._report import write_report  # noqa: E402


def photos() -> dict[str, np.ndarray]:
    import matplotlib.cbook as cbook
    from skimage import data
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.asarray(Image.open(f).convert("RGB"))
    return {"astronaut": data.astronaut(), "grace_hopper": grace}


def scene_with(face: np.ndarray, rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    scale = rng.uniform(0.6, 1.8)
    small = Image.fromarray(face).resize((int(face.shape[1] * scale),) * 2, Image.BILINEAR)
    W, H = int(small.width * rng.uniform(1.3, 2.2)), int(small.height * rng.uniform(1.2, 2.0))
    scene = Image.fromarray(background).resize((W, H), Image.BILINEAR).filter(ImageFilter.GaussianBlur(3))
    scene.paste(small, (int(rng.integers(0, W - small.width + 1)), int(rng.integers(0, H - small.height + 1))))
    return np.asarray(scene)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("-n", type=int, default=100, help="proxy faces")
    ap.add_argument("--engine", default="alter")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from sdk_python import AvatarEstimator, NoFaceError
    from sdk_python.backends import available_backends
    from sdk_python.model_source import open_model_source
    from toolchain.engines.registry import create_engine
    from toolchain.proxy.photo_style import render_photo

    files = open_model_source(args.model).files
    combos = [(b, p) for b, p in [("onnxruntime", "fp32"), ("litert", "fp16"), ("litert", "int8"), ("torch", "fp32")]
              if b in available_backends() and files.for_backend(b, p)]
    # 1. real photos, every backend
    pics = photos()
    per_backend = {}
    for b, p in combos:
        with AvatarEstimator.create_from_bundle(args.model, backend=b, precision=p) as est:
            per_backend[f"{b} {p}"] = {n: est.estimate(img, color_order="rgb") for n, img in pics.items()}
    ref_key = next(iter(per_backend))
    photo_rows, photo_json = [], {}
    for key, res in per_backend.items():
        for n, r in res.items():
            ref = per_backend[ref_key][n].vector
            agree = sum(r.vector[k] == ref[k] for k in ref)
            labels = ", ".join(f"{k}={v.label}({v.confidence:.2f})" for k, v in r.parameters.items())
            photo_rows.append([n, key, f"{agree}/{len(ref)}", f"{r.face.score:.2f}", labels])
            photo_json[f"{n} | {key}"] = {"vector": r.vector, "agree_with_ref": agree, "face_score": r.face.score}

    # 2. crop robustness on proxy faces
    engine = create_engine(args.engine)
    rng = np.random.default_rng(args.seed)
    from skimage import data
    backgrounds = [data.coffee(), data.chelsea(), data.rocket(), data.astronaut()[:, :120].repeat(3, 1)]
    agree = {}
    counts = {"ok": 0, "no_face_in_scene": 0, "no_face_in_original": 0}
    with AvatarEstimator.create_from_bundle(args.model, backend=combos[0][0], detection="none") as pre, \
            AvatarEstimator.create_from_bundle(args.model, backend=combos[0][0]) as det, \
            AvatarEstimator.create_from_bundle(args.model, backend=combos[0][0], refine_keypoints=False) as det1:
        both = {"aligned (2-pass keypoints)": det, "aligned (1-pass keypoints)": det1}
        for i in range(args.n):
            vec = engine.schema.sample_one(10_000 + args.seed, i)
            face, _ = render_photo(engine, vec, seed=i, size=256)
            ref = pre.estimate(face, color_order="rgb").vector
            scene = scene_with(face, rng, backgrounds[i % len(backgrounds)])
            for name, est in both.items():
                try:
                    got = est.estimate(scene, color_order="rgb").vector
                except NoFaceError:
                    counts["no_face_in_scene"] += name.startswith("aligned (2")
                    continue
                for k in ref:
                    agree.setdefault(name, {}).setdefault(k, []).append(got[k] == ref[k])
            counts["ok"] += 1
    rows = [["photo", "backend", "agree with " + ref_key, "face score", "estimate"]] + photo_rows
    rob_rows = []
    for name, per in agree.items():
        mean = np.mean([np.mean(v) for v in per.values()])
        rob_rows.append([name, len(next(iter(per.values()))), f"{mean:.3f}"] +
                        [f"{k} {np.mean(v):.2f}" for k, v in per.items()])
    md_rows = photo_rows + [["", "", "", "", ""], ["crop robustness", "faces", "mean agreement", "", "per parameter"]]
    md_rows += [[r[0], "", r[2], str(r[1]), ", ".join(r[3:])] for r in rob_rows]
    notes = (f"Model: {args.model}. Crop robustness: {args.n} photo-proxy faces ({args.engine}) pasted at random "
             "positions and scales (0.6-1.8x) into larger blurred scenes (scikit-image pictures); agreement = same "
             "discrete option as the estimate on the pre-aligned proxy image (detection='none'). "
             f"Faces missed by the detector in the scene: {counts['no_face_in_scene']}.")
    write_report("sdk_crop_robustness", {"config": vars(args), "photos": photo_json,
                                         "robustness": {n: {k: float(np.mean(v)) for k, v in per.items()}
                                                        for n, per in agree.items()}, "counts": counts},
                 rows[0], md_rows, notes)
    for r in photo_rows:
        print(r)
    for r in rob_rows:
        print(r)
    print(counts)


if __name__ == "__main__":
    main()
