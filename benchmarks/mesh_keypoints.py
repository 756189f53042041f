"""Alignment keypoints from the face mesh vs from the detector: the systematic offset between them, and how
each frames faces against the renders' masks.

    python -m benchmarks mesh-keypoints [--proxies 40] [--out DIR]

The SDK aligns a face crop on four keypoints (eyes, nose tip, mouth). The detector gives them (IMAGE mode:
a first detection, then the keypoint-refining second detection on a window around the face); VIDEO mode's
tracking and a cheaper IMAGE mode take them from MediaPipe's face mesh instead (the mesh points nearest
BlazeFace's keypoints, :data:`sdk_python.face_mesh.MESH_POINTS`). The two conventions differ (FIELD-NOTES),
so this benchmark:

1. runs both on real portraits (scikit-image's astronaut, matplotlib's Grace Hopper, each mirrored and at
   two sizes) and on photo-style proxy faces of both built-in engines (default geometry, no glasses, pasted
   at a random place and size into a larger scene), the mesh on the region MediaPipe's tracking would feed
   it (from the landmarks of a first mesh run on the detection's region);
2. fits the offset (mesh -> detector) per keypoint in the face's own frame (x along the eye line, unit = eye
   distance): the median over all samples, printed as ``MESH_TO_DETECTOR`` for ``sdk_python/face_mesh.py``;
3. measures framing as ``tests/test_sdk_framing.py`` defines it: where the eye and mouth mask centroids of
   the proxy faces land in a 256 px aligned crop, against the canonical framing the training renders have
   (px; the framing test allows 5 px for the renders themselves), for the detector's keypoints (first pass,
   refined) and the mesh's (raw, offset-corrected); and agreement of the corrected mesh keypoints with the
   refined detector keypoints on the portraits (px at 256);
4. times the keypoint-refining second detection against one face-mesh run on the same faces.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._report import RESULTS, write_report
from benchmarks.face_corpus import portraits

CROP = 256
MASK_POINTS = ("right_eye", "left_eye", "mouth")


def _scene(face: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict, float]:
    """``face`` pasted at a random size and place into a plain scene; the mask's eye and mouth centroids there."""
    from toolchain.engines.face_art import PARTS
    k = float(rng.uniform(0.8, 1.6))
    side = int(round(face.shape[0] * k))
    small = Image.fromarray(face).resize((side, side), Image.BILINEAR)
    W, H = int(side * rng.uniform(1.3, 2.0)), int(side * rng.uniform(1.2, 1.8))
    scene = Image.new("RGB", (W, H), tuple(int(v) for v in rng.integers(0, 255, 3)))
    ox, oy = int(rng.integers(0, W - side + 1)), int(rng.integers(0, H - side + 1))
    scene.paste(small, (ox, oy))
    ys, xs = np.nonzero(mask == PARTS.index("eyes"))
    mid = xs.mean()
    truth = {"right_eye": (xs[xs < mid].mean(), ys[xs < mid].mean()), "left_eye": (xs[xs >= mid].mean(), ys[xs >= mid].mean())}
    ys, xs = np.nonzero(mask == PARTS.index("mouth"))
    truth["mouth"] = (xs.mean(), ys.mean())
    # mask pixel i spans [i, i + 1): its centre is i + 0.5 in continuous coordinates
    return np.asarray(scene), {n: ((x + 0.5) * k + ox, (y + 0.5) * k + oy) for n, (x, y) in truth.items()}, k


def samples(n_proxies: int, seed: int = 0) -> list[dict]:
    """Real portraits (no masks) and proxy faces with mask truth, as ``{"name", "domain", "image", "truth"}``."""
    from toolchain.engines.registry import create_engine
    from toolchain.proxy import render_photo
    out = []
    for name, img in portraits().items():
        for mirrored in (False, True):
            im = img[:, ::-1] if mirrored else img
            for scale in (1.0, 0.6):
                pil = Image.fromarray(np.ascontiguousarray(im))
                if scale != 1.0:
                    pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.LANCZOS)
                out.append({"name": f"{name}{'-mirror' if mirrored else ''}@{scale:g}", "domain": "portrait",
                            "image": np.asarray(pil), "truth": None})
    rng = np.random.default_rng(seed)
    for engine_name in ("alter", "morph"):
        engine = create_engine(engine_name)
        schema = engine.schema
        for i in range(n_proxies // 2):
            v = schema.sample_one(seed + 17, i)
            for p in schema.continuous:   # default geometry: the canonical framing is defined there
                v[p.name] = p.default
            if "glasses" in v:
                v["glasses"] = 0            # lenses cover the eye masks
            face, mask = render_photo(engine, v, seed=1000 + i, size=CROP)
            scene, truth, _ = _scene(face, mask, rng)
            out.append({"name": f"{engine_name}/{i}", "domain": "proxy", "image": scene, "truth": truth})
    return out


def _crop_px(keypoints: dict, truth: dict) -> dict[str, float]:
    """Where each truth point lands in the ``CROP`` px crop aligned on ``keypoints``, minus the canonical spot."""
    from sdk_python.framing import CANONICAL_KEYPOINTS, alignment_transform
    M = alignment_transform(keypoints, CROP)
    out = {}
    for n in MASK_POINTS:
        x, y = truth[n]
        got = M @ np.array([x, y, 1.0])
        out[n] = float(np.hypot(*(got - np.array(CANONICAL_KEYPOINTS[n]) * CROP)))
    return out


def _agreement_px(a: dict, b: dict) -> float:
    """Largest distance (px of a ``CROP`` crop aligned on ``b``) between the crops' keypoint positions."""
    from sdk_python.framing import ALIGN_NAMES, alignment_transform
    M = alignment_transform(b, CROP)
    return float(max(np.hypot(*(M @ np.array([*a[n], 1.0]) - M @ np.array([*b[n], 1.0]))) for n in ALIGN_NAMES))


def measure(items: list[dict]) -> dict:
    from sdk_python.detector_models import fetch_model
    from sdk_python.face_finder import FaceFinder
    from sdk_python.face_mesh import FaceMesh, Roi, alignment_keypoints, face_frame_offsets
    from sdk_python.framing import ALIGN_NAMES
    finder = FaceFinder("short", fetch_model, min_confidence=0.6, checks=True, num_threads=2)
    mesh = FaceMesh(fetch_model("mesh"), num_threads=2)
    det = finder.primary
    zero = {k: (0.0, 0.0) for k in ALIGN_NAMES}
    rows = []
    try:
        for it in items:
            img = it["image"]
            found = finder.find(img).faces
            if not found:
                rows.append({"name": it["name"], "domain": it["domain"], "found": False})
                continue
            face = max(found, key=lambda f: f.box.area)
            t0 = time.perf_counter()
            refined = det._refine_once(img, face, 2.2)   # always the second pass here: we time and compare it
            refine_ms = (time.perf_counter() - t0) * 1000
            first = mesh.run(img, Roi.from_detection(face))
            t0 = time.perf_counter()
            tracked = mesh.run(img, Roi.from_landmarks(first.points))   # the region tracking feeds the mesh
            mesh_ms = (time.perf_counter() - t0) * 1000
            row = {"name": it["name"], "domain": it["domain"], "found": True, "refine_ms": refine_ms,
                   "mesh_ms": mesh_ms, "presence": tracked.presence,
                   "offsets": face_frame_offsets(tracked.points, refined.keypoints),
                   "keypoints": {"first": face.keypoints, "refined": refined.keypoints,
                                 "mesh_raw": alignment_keypoints(tracked.points, zero)},
                   "points": tracked.points, "points_detection_roi": first.points, "truth": it["truth"]}
            rows.append(row)
    finally:
        finder.close()
        mesh.close()
    return {"rows": rows}


#: Each keypoint's mirror image: a face and its mirror image have mirrored offsets, so the fit pools them.
_MIRROR = {"right_eye": "left_eye", "left_eye": "right_eye", "nose_tip": "nose_tip", "mouth": "mouth"}


def fit(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Median offset per keypoint over every sample where both found the face, mirror-symmetric: a keypoint's
    samples are pooled with its mirror partner's, x negated (faces are as likely turned either way)."""
    from sdk_python.framing import ALIGN_NAMES
    ok = [r for r in rows if r.get("found")]
    out = {}
    for k in ALIGN_NAMES:
        xs = [r["offsets"][k][0] for r in ok] + [-r["offsets"][_MIRROR[k]][0] for r in ok]
        ys = [r["offsets"][k][1] for r in ok] + [r["offsets"][_MIRROR[k]][1] for r in ok]
        out[k] = (round(float(np.median(xs)), 4), round(float(np.median(ys)), 4))
    return out


def evaluate(rows: list[dict], offsets: dict) -> dict:
    from sdk_python.face_mesh import alignment_keypoints
    ok = [r for r in rows if r.get("found")]
    for r in ok:
        r["keypoints"]["mesh"] = alignment_keypoints(r["points"], offsets)
        r["keypoints"]["mesh_detection_roi"] = alignment_keypoints(r["points_detection_roi"], offsets)
    methods = ("first", "refined", "mesh_raw", "mesh", "mesh_detection_roi")
    framing = {}
    for m in methods:
        errs = [_crop_px(r["keypoints"][m], r["truth"]) for r in ok if r["truth"] is not None]
        framing[m] = {n: {"mean": float(np.mean([e[n] for e in errs])), "p90": float(np.percentile([e[n] for e in errs], 90))}
                      for n in MASK_POINTS} if errs else {}
        framing[m]["all_mean"] = float(np.mean([v for e in errs for v in e.values()])) if errs else None
    agree = {d: [_agreement_px(r["keypoints"]["mesh"], r["keypoints"]["refined"]) for r in ok if r["domain"] == d]
             for d in ("portrait", "proxy")}
    raw_agree = {d: [_agreement_px(r["keypoints"]["mesh_raw"], r["keypoints"]["refined"]) for r in ok if r["domain"] == d]
                 for d in ("portrait", "proxy")}
    return {"framing_px": framing,
            "agreement_px": {d: {"mean": float(np.mean(v)), "max": float(np.max(v))} for d, v in agree.items() if v},
            "agreement_raw_px": {d: {"mean": float(np.mean(v)), "max": float(np.max(v))} for d, v in raw_agree.items() if v},
            "refine_ms_p50": float(np.median([r["refine_ms"] for r in ok])),
            "mesh_ms_p50": float(np.median([r["mesh_ms"] for r in ok])),
            "found": {d: f"{sum(r.get('found', False) for r in rows if r['domain'] == d)}/"
                         f"{sum(r['domain'] == d for r in rows)}" for d in ("portrait", "proxy")}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks mesh-keypoints", description=__doc__.splitlines()[0])
    ap.add_argument("--proxies", type=int, default=40, help="proxy faces (half per built-in engine)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    from sdk_python.native_logs import silence_native_logs
    silence_native_logs()
    res = measure(samples(a.proxies))
    offsets = fit(res["rows"])
    ev = evaluate(res["rows"], offsets)
    from sdk_python.face_mesh import MESH_TO_DETECTOR
    in_sdk = evaluate(res["rows"], MESH_TO_DETECTOR)   # the offsets the SDK ships, on the same faces
    names = {"first": "detector, first pass", "refined": "detector, refined (2nd detection)",
             "mesh_raw": "face mesh, raw points", "mesh": "face mesh, offset-corrected (fitted here)",
             "mesh_detection_roi": "face mesh on the detection's region (IMAGE mode), corrected"}
    rows = []
    for m, label in names.items():
        f = ev["framing_px"][m]
        rows.append([label] + [f"{f[n]['mean']:.2f} / {f[n]['p90']:.2f}" for n in MASK_POINTS] + [f"{f['all_mean']:.2f}"])
    f = in_sdk["framing_px"]["mesh"]
    rows.append(["face mesh, offsets in the SDK"] + [f"{f[n]['mean']:.2f} / {f[n]['p90']:.2f}" for n in MASK_POINTS]
                + [f"{f['all_mean']:.2f}"])
    command = "python -m benchmarks mesh-keypoints " + " ".join(argv if argv is not None else sys.argv[1:])
    data = {"offsets_fitted": offsets, "offsets_in_sdk": MESH_TO_DETECTOR, "evaluation": ev, "evaluation_sdk_offsets": in_sdk,
            "samples": [{k: r[k] for k in ("name", "domain", "found")} | ({"offsets": r["offsets"], "refine_ms": r["refine_ms"],
                         "mesh_ms": r["mesh_ms"], "presence": r["presence"]} if r.get("found") else {})
                        for r in res["rows"]], "command": command}
    agree = ev["agreement_px"]
    write_report("mesh_keypoints", data,
                 ["keypoints", "right eye: mean / p90 px", "left eye", "mouth", "mean px"], rows,
                 notes=(f"Framing error: distance (px of a {CROP} px aligned crop) between where a proxy face's eye / mouth "
                        f"mask centroid lands and where the canonical framing puts it; faces found: {ev['found']}. "
                        f"Fitted offsets (mesh -> detector, face frame, unit eye distance): {offsets}. Corrected mesh vs "
                        f"refined detector keypoints, largest distance in the crop: portraits mean "
                        f"{agree.get('portrait', {}).get('mean', float('nan')):.2f} px (max "
                        f"{agree.get('portrait', {}).get('max', float('nan')):.2f}), proxies mean "
                        f"{agree.get('proxy', {}).get('mean', float('nan')):.2f} px; raw mesh points: "
                        f"{ev['agreement_raw_px']}. Cost per face, p50: the refining second detection "
                        f"{ev['refine_ms_p50']:.2f} ms, one face-mesh run {ev['mesh_ms_p50']:.2f} ms (2 threads)."),
                 out_dir=a.out, stamp=f"Command: `{command}`")
    print((a.out / "mesh_keypoints.md").read_text())
    print("MESH_TO_DETECTOR =", offsets)


if __name__ == "__main__":
    main()
