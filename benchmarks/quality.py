"""Where the input-quality thresholds come from: the measures on clean photos and on degraded copies.

    python -m benchmarks quality [--per-engine 15] [--out DIR]

For every positive of ``benchmarks/face_corpus.py`` that the detector finds (packaged portraits,
photo-style proxy faces of both built-in engines), :func:`sdk_python.quality.assess` runs on the photo
and on copies that are blurred (Gaussian, sigma 0.08 and 0.15 eye distances), darkened (x0.25),
overexposed (x2.5), tilted (35 degrees), grayscale, and shrunk (face ~40 px). The table gives each
measure's spread per condition and the share of images that get each warning: a good threshold warns
on the degraded copies and stays silent on the clean ones. Writes ``results/quality.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageFilter

WARN_KEYS = {"small": "face is small", "blur": "blurred", "dark": "dark", "bright": "overexposed",
             "gray": "black-and-white", "pose": "turned or tilted"}


def _conditions(eye_px: float) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    def blur(k):
        return lambda a: np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(max(0.5, k * eye_px))))

    def gain(g):
        return lambda a: np.clip(a.astype(np.float32) * g, 0, 255).astype(np.uint8)

    def rotate(a):
        return np.asarray(Image.fromarray(a).rotate(35, resample=Image.BILINEAR, expand=True, fillcolor=(128, 128, 128)))

    def gray(a):
        return np.asarray(Image.fromarray(a).convert("L").convert("RGB"))

    def shrink(a):
        k = min(1.0, 40.0 / (eye_px / 0.44))   # face box ~ eye distance / 0.44
        h, w = a.shape[:2]
        small = Image.fromarray(a).resize((max(8, round(w * k)), max(8, round(h * k))), Image.LANCZOS)
        canvas = Image.new("RGB", (max(160, small.width), max(160, small.height)), (120, 120, 120))
        canvas.paste(small, (0, 0))
        return np.asarray(canvas)

    return {"clean": lambda a: a, "blur 0.08": blur(0.08), "blur 0.15": blur(0.15), "dark x0.25": gain(0.25),
            "bright x2.5": gain(2.5), "tilt 35": rotate, "grayscale": gray, "face ~40 px": shrink}


def measure(per_engine: int) -> tuple[list[list[Any]], dict[str, Any]]:
    from benchmarks.face_corpus import portraits, proxy_faces
    from sdk_python.detector_models import fetch_model
    from sdk_python.face_check import geometry
    from sdk_python.face_finder import FaceFinder
    from sdk_python.quality import THRESHOLDS, assess
    images = list(portraits().items())
    for eng in ("alter", "morph"):
        images += [(f"proxy_{eng}/{i}", im) for i, im in enumerate(proxy_faces(eng, per_engine, seed=11))]
    finder = FaceFinder("auto", fetch_model, 0.6)
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, img in images:
        found = finder.find(img).faces
        if not found:
            continue
        eye = geometry(found[0]).eye_distance_px
        for cond, fn in _conditions(eye).items():
            deg = fn(img)
            faces = finder.find(deg).faces
            if not faces:
                per[cond]["missed"].append(1.0)
                continue
            per[cond]["missed"].append(0.0)
            q = assess(deg, faces[0], ("hair_color", "skin_tone"))
            for k in ("size_px", "blur", "brightness", "dark_fraction", "bright_fraction", "yaw", "pitch", "roll"):
                v = getattr(q, k)
                if v is not None:
                    per[cond][k].append(float(v))
            for key, text in WARN_KEYS.items():
                per[cond]["warn_" + key].append(float(any(text in w for w in q.warnings)))
    finder.close()
    rows = []
    for cond, m in per.items():
        def spread(k, fmt="{:.0f}"):
            v = m.get(k, [])
            return "-" if not v else f"{fmt.format(np.percentile(v, 5))} / {fmt.format(np.median(v))} / {fmt.format(np.percentile(v, 95))}"
        warns = ", ".join(f"{k} {np.mean(m['warn_' + k]):.0%}" for k in WARN_KEYS if m.get("warn_" + k) and np.mean(m["warn_" + k]) > 0)
        rows.append([cond, len(m["missed"]), f"{np.mean(m['missed']):.0%}", spread("size_px"), spread("blur"),
                     spread("brightness", "{:.2f}"), spread("yaw"), spread("pitch"), spread("roll"), warns or "none"])
    raw = {c: {k: v for k, v in m.items()} for c, m in per.items()}
    return rows, {"per_condition": raw, "thresholds": THRESHOLDS, "images": [n for n, _ in images]}


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import commit
    from benchmarks._report import RESULTS, write_report
    from sdk_python.native_logs import silence_native_logs
    silence_native_logs()
    ap = argparse.ArgumentParser(prog="python -m benchmarks quality", description=__doc__.splitlines()[0])
    ap.add_argument("--per-engine", type=int, default=15, help="proxy faces per built-in engine (default 15)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: benchmarks/results/)")
    a = ap.parse_args(argv)
    command = "python -m benchmarks quality " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))
    load, t0 = os.getloadavg()[0], time.perf_counter()
    rows, data = measure(a.per_engine)
    stamp = f"Code {commit()}, load average {load:.2f} at start, {time.perf_counter() - t0:.0f} s; command: `{command.strip()}`"
    notes = ("Cells: 5th percentile / median / 95th percentile over the images of each condition. `missed`: the "
             "degraded copy had no accepted face. Warnings: share of images that got each warning with the thresholds "
             f"in sdk_python/quality.py ({data['thresholds']}). Pose in degrees (yaw + = subject's left, pitch + = chin "
             "up, roll + = head tilted to the image's right); the tilt copies are rotated 35 degrees in the image plane.")
    j, m = write_report("quality", {**data, "command": command.strip(), "commit": commit()},
                        ["condition", "n", "missed", "size px", "sharpness", "brightness", "yaw", "pitch", "roll",
                         "warnings"], rows, notes, out_dir=a.out, stamp=stamp)
    print(m.read_text())
    print(f"wrote {j}, {m}")


if __name__ == "__main__":
    main()
