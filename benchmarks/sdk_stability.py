"""How steady the SDK's answers are on one photo: under small jitter, and under mirroring (IMAGE mode), and as
a video stream (VIDEO mode, tracked vs detecting every frame).

    python -m benchmarks sdk-stability BUNDLE [--frames 30] [--jitter 3] [--images DIR] [--out DIR]

For every photo (scikit-image's astronaut, matplotlib's Grace Hopper, each also at half size, and up to 6
images of ``--images``, upscaled to 384 px), ``--frames`` frames are made by shifting it by up to ±``--jitter`` px (edge padding)
and adding light noise (σ = 2 grey levels); each frame is estimated on its own. Reported per parameter and
configuration: flips (how often the answer changes from one frame to the next, summed over photos),
distinct answers, continuous spread (max − min, in the parameter's units and as a share of its range), and
mirror agreement (the photo and its mirror image give the same answer, mapped through the schema's ``mirror`` field). Crop drift is how
far the aligned crop's corners move (in crop pixels) once each frame's known shift is undone.
Configurations: ``baseline`` (IMAGE mode, one crop), ``mirror_tta`` (keypoints of the image and its mirror
averaged before aligning; the crop and its mirror averaged), and the same frames as a 30 fps stream in VIDEO
mode (answers smoothed, discrete choices with hysteresis; a new stream per photo): ``video_detect`` (tracking
off: the detector on every frame) and ``video_tracked`` (the default: the face followed from the previous
frame's face-mesh landmarks, the detector on the first frame and every 30th). Mirror agreement is an IMAGE-mode
measure (``–`` for the video configurations).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._report import RESULTS, write_report
from benchmarks.face_corpus import portraits

CONFIGS = {"baseline": {"mirror_tta": False}, "mirror_tta": {"mirror_tta": True},
           "video_detect": {"running_mode": "video", "tracking": False},
           "video_tracked": {"running_mode": "video", "tracking": True}}


def photos(folder: Path | None, size: int = 384) -> dict[str, np.ndarray]:
    out = portraits()
    for name in list(out):   # the same faces smaller in the frame: detection and alignment get harder
        im = Image.fromarray(out[name])
        out[f"{name}@0.5"] = np.asarray(im.resize((im.width // 2, im.height // 2), Image.LANCZOS))
    if folder is not None:
        for p in sorted(q for q in folder.iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg"))[:6]:
            with Image.open(p) as im:
                out[p.stem] = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))
    return out


def jittered(img: np.ndarray, frames: int, jitter: int, seed: int) -> list[tuple[np.ndarray, tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    padded = np.pad(img, ((jitter, jitter), (jitter, jitter), (0, 0)), mode="edge")
    out = []
    for _ in range(frames):
        dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, 2))
        frame = padded[jitter - dy:jitter - dy + h, jitter - dx:jitter - dx + w].astype(np.float32)
        frame = np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)
        out.append((frame, (dx, dy)))
    return out


def crop_drift(keypoints: list[dict], shifts: list[tuple[int, int]], size: int) -> tuple[float, float]:
    """Largest and mean movement (crop px) of the crop's corners, each frame's shift undone, against the median
    frame."""
    from sdk_python.framing import alignment_transform
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    backs = []
    for kp, (dx, dy) in zip(keypoints, shifts):
        M = alignment_transform(kp, size)
        inv = np.linalg.inv(np.vstack([M, [0, 0, 1]]))
        pts = np.c_[corners, np.ones(4)] @ inv[:2].T - [dx, dy]
        backs.append((pts, float(np.sqrt(abs(np.linalg.det(M[:, :2]))))))
    ref = np.median(np.stack([b for b, _ in backs]), axis=0)
    moves = [np.linalg.norm(b - ref, axis=1).max() * s for b, s in backs]
    return float(max(moves)), float(np.mean(moves))


def mirrored_value(schema: dict, name: str, value):
    p = next(q for q in schema["params"] if q["name"] == name)
    if p["kind"] == "discrete":
        return p["mirror"][value] if p.get("mirror") else value
    return p["low"] + p["high"] - value if p.get("mirror") == "reflect" else value


def run(bundle: Path, frames: int, jitter: int, folder: Path | None) -> dict:
    from sdk_python import AvatarEstimator
    from sdk_python.errors import FaceError, ParityWarning
    imgs = photos(folder)
    results: dict = {}
    ranges: dict = {}
    for cname, opts in CONFIGS.items():
        video = opts.get("running_mode") == "video"

        def create(opts: dict = opts):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ParityWarning)
                return AvatarEstimator.create_from_bundle(bundle, **opts)
        est = create()
        per_photo = {}
        with est:
            schema = est.schema
            ranges = {q["name"]: q["high"] - q["low"] for q in schema["params"] if q["kind"] == "continuous"}
            for pname, img in imgs.items():
                stream = create() if video else None   # a new video per photo
                seq, kps, shifts, tracked = [], [], [], []
                for k, (frame, shift) in enumerate(jittered(img, frames, jitter, seed=len(pname))):
                    try:
                        r = (stream.estimate_for_video(frame, 33 * k, color_order="rgb") if video
                             else est.estimate(frame, color_order="rgb"))
                    except FaceError:
                        continue
                    seq.append(r.vector)
                    kps.append(r.face.keypoints)
                    shifts.append(shift)
                    tracked.append(bool(getattr(r, "tracked", False)))
                if stream is not None:
                    stream.close()
                if len(seq) < 2:
                    per_photo[pname] = {"skipped": "no face found in the frames"}
                    continue
                mirror, mirror_gap = {}, {}
                if not video:
                    try:
                        a, b = est.estimate(img, color_order="rgb"), est.estimate(img[:, ::-1], color_order="rgb")
                        mirror = {n: bool(np.isclose(mirrored_value(schema, n, b.vector[n]), a.vector[n], atol=1e-6)
                                          if isinstance(a.vector[n], float)
                                          else mirrored_value(schema, n, b.vector[n]) == a.vector[n])
                                  for n in a.vector}
                        mirror_gap = {n: abs(mirrored_value(schema, n, b.vector[n]) - a.vector[n])
                                      for n in a.vector if isinstance(a.vector[n], float)}
                    except FaceError:
                        pass
                drift_max, drift_mean = crop_drift(kps, shifts, est.input_size)
                per_photo[pname] = {
                    "frames": len(seq), "tracked_frames": int(sum(tracked)),
                    "flips": {n: int(sum(x[n] != y[n] for x, y in zip(seq, seq[1:]))) for n in seq[0]
                              if isinstance(seq[0][n], int)},
                    "distinct": {n: len({x[n] for x in seq}) for n in seq[0] if isinstance(seq[0][n], int)},
                    "spread": {n: float(max(x[n] for x in seq) - min(x[n] for x in seq)) for n in seq[0]
                               if isinstance(seq[0][n], float)},
                    "mirror_same": mirror, "mirror_gap": mirror_gap,
                    "crop_drift_px": drift_max, "crop_drift_mean_px": drift_mean}
        results[cname] = per_photo
    return {"results": results, "photos": list(imgs), "frames": frames, "jitter": jitter, "ranges": ranges}


def table(res: dict) -> tuple[list[str], list[list]]:
    configs = list(res["results"])
    names: list[str] = []
    for per_photo in res["results"].values():
        for r in per_photo.values():
            for n in [*r.get("flips", {}), *r.get("spread", {})]:
                if n not in names:
                    names.append(n)
    rows = []
    for n in names:
        row = [n]
        for c in configs:
            ok = [r for r in res["results"][c].values() if "frames" in r]
            if n in (ok[0]["flips"] if ok else {}):
                flips = sum(r["flips"][n] for r in ok)
                distinct = max(r["distinct"][n] for r in ok)
                steady = f"{flips} flips, ≤{distinct} answers"
            else:
                worst = max(r["spread"][n] for r in ok) if ok else None
                rng = res.get("ranges", {}).get(n)
                steady = ("–" if worst is None else f"spread ≤ {worst:.3f}"
                          + (f" ({worst / rng:.1%} of its range)" if rng else ""))
            mir = [r["mirror_same"][n] for r in ok if n in r["mirror_same"]]
            row += [steady, f"{sum(mir)}/{len(mir)}" if mir else "–"]
        rows.append(row)
    drift = ["crop drift, crop px (max / mean per photo)"]
    for c in configs:
        ok = {p: r for p, r in res["results"][c].items() if "frames" in r}
        drift += ["; ".join(f"{p} {r['crop_drift_px']:.2f} / {r['crop_drift_mean_px']:.2f}" for p, r in ok.items()), ""]
    rows.append(drift)
    flips = ["flips, all discrete parameters"]
    for c in configs:
        ok = [r for r in res["results"][c].values() if "frames" in r]
        tracked = sum(r.get("tracked_frames", 0) for r in ok)
        flips += [f"{sum(sum(r['flips'].values()) for r in ok)}",
                  f"{tracked}/{sum(r['frames'] for r in ok)} frames tracked" if tracked else ""]
    rows.append(flips)
    headers = ["parameter"] + [h for c in configs for h in (f"{c}: under jitter", f"{c}: mirror agrees")]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks sdk-stability", description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--jitter", type=int, default=3)
    ap.add_argument("--images", type=Path, default=None, help="a folder of extra face photos (up to 6 used)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    res = run(a.bundle.resolve(), a.frames, a.jitter, a.images)
    headers, rows = table(res)
    command = "python -m benchmarks sdk-stability " + " ".join(argv if argv is not None else sys.argv[1:])
    n_ok = {c: sum("frames" in r for r in per.values()) for c, per in res["results"].items()}
    write_report("sdk_stability", {**res, "bundle": str(a.bundle), "command": command}, headers, rows,
                 notes=(f"Bundle `{a.bundle.name}`; photos: {', '.join(res['photos'])} (faces found in "
                        f"{', '.join(f'{c}: {n}' for c, n in n_ok.items())}); {a.frames} frames each with up to "
                        f"±{a.jitter} px shift and σ = 2 noise; default backend; baseline and mirror_tta in IMAGE "
                        "mode (each frame on its own), video_detect and video_tracked in VIDEO mode (the frames as one "
                        "30 fps stream per photo, answers smoothed; tracking off / on). Flips are summed over "
                        "photos; mirror agreement counts photos whose mirror image gets the same (mapped) answer."),
                 out_dir=a.out, stamp=f"Command: `{command}`")
    print((a.out / "sdk_stability.md").read_text())


if __name__ == "__main__":
    main()
