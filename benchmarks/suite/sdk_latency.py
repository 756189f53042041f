"""End-to-end SDK latency on the build's bundle: detection, crop, inference, total (p50/p90/p99) per backend
and precision the bundle and this machine support, on an image of the build's held-out set. Each row carries
the model's parity status in the bundle (a `below threshold` row is a model kept with --keep-failed)."""
from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from toolchain.evaluation.evaluate import load_labelled_set

from .common import BuildRun, Table

FRAME = 512


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q))


def run(build: BuildRun, quick: bool) -> Table:
    from sdk_python import AvatarEstimator, contract
    from sdk_python.backends import available_backends
    from sdk_python.bundle import open_bundle
    from sdk_python.errors import FaceError, ParityWarning
    bundle = build.output("export")["bundle"]
    with open_bundle(bundle) as b:
        has_detector = b.has_face_detector
        present = {(m["format"], m["precision"]) for m in b.manifest["models"]}
    path, _ = load_labelled_set(build.output("heldout")["set"]).items[0]
    with Image.open(path) as im:
        # Detection cost grows with the frame: time a phone-camera-sized frame, not a tiny training render.
        image = np.asarray(im.convert("RGB").resize((FRAME, FRAME), Image.BICUBIC))
    detection = "mediapipe" if has_detector else "none"
    fallback = ""
    if has_detector:
        try:
            with AvatarEstimator.create_from_bundle(bundle, detection="mediapipe") as probe:
                probe.estimate(image, color_order="rgb")
        except FaceError as exc:
            # A weak proxy-trained generator's faces may not read as faces to MediaPipe: time the rest of the
            # pipeline on the pre-framed image and say so rather than drop the table.
            fallback = (f"MediaPipe found no usable face in the held-out image ({type(exc).__name__}), "
                        "so timed with detection='none'")
            detection = "none"
    runs, warmup = (10, 2) if quick else (200, 20)
    usable = set(available_backends())
    results, rows, skipped = [], [], []
    for r in contract.rows():
        backend, prec = r.runtime, r.precision
        if (r.format, prec) not in present:
            skipped.append(f"{backend} {prec}: not in the bundle")
            continue
        if backend not in usable:
            skipped.append(f"{backend} {prec}: runtime not available here")
            continue
        with warnings.catch_warnings():   # a kept below-threshold model warns: its row says so instead
            warnings.simplefilter("ignore", ParityWarning)
            est = AvatarEstimator.create_from_bundle(bundle, backend=backend, precision=prec, num_threads=2,
                                                     detection=detection)
        with est:
            parity = est.backend.parity_status
            for _ in range(warmup):
                est.estimate(image, color_order="rgb")
            t = [est.estimate(image, color_order="rgb").timings for _ in range(runs)]
        a = np.array([(x.detection_ms, x.crop_ms, x.inference_ms, x.total_ms) for x in t])
        res = {"backend": backend, "precision": prec, "parity": parity, "samples_ms": a.tolist(),
               **{k: {q: _pct(a[:, i], q) for q in (50, 90, 99)} for i, k in enumerate(("detection", "crop", "inference",
                                                                                        "total"))}}
        results.append(res)
        tot = res["total"]
        rows.append([backend, prec, parity, f"{res['detection'][50]:.2f}", f"{res['crop'][50]:.2f}", f"{res['inference'][50]:.2f}",
                     f"{tot[50]:.2f} / {tot[90]:.2f} / {tot[99]:.2f}", f"{1000 / tot[50]:.0f}"])
    why = fallback or ("the bundle carries a detector" if has_detector else "the bundle has no detector: pre-framed input")
    return Table("sdk_latency", {"results": results, "skipped": skipped, "detection": detection, "detection_fallback": fallback,
                                  "image": str(path), "frame_px": FRAME},
                 ["backend", "precision", "parity", "detect p50", "crop p50", "infer p50", "total p50/p90/p99 ms", "Hz (p50)"], rows,
                 notes=f"Detection: {detection} ({why}); {runs} timed runs after {warmup} warm-up, 2 threads, on "
                       f"{path.name} of the held-out set resized to {FRAME}x{FRAME}. Skipped: {'; '.join(skipped) or 'none'}.")
