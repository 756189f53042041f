"""Face detection on real photos and on pictures with no face: false positives, misses, modes, times.

    python -m benchmarks detection [--per-kind 20] [--out DIR]

Two tables (``benchmarks/results/detection.{json,md}`` and ``detection_modes.{json,md}``):

* **detection**: the corpus of ``benchmarks/face_corpus.py`` (negatives: noise, gradients, textures,
  drawn cartoon animals, scikit-image pictures without people; positives: packaged portraits,
  photo-style proxy faces, the same pasted smaller into bigger scenes, engine renders). Per
  configuration and family: false-positive rate (a negative with any face accepted) and miss rate (a
  positive with none). *Before* is the SDK before issue 15: short-range model, score >= 0.5, no checks.
* **detection_modes**: faces found and milliseconds per detector mode on scikit-image's astronaut,
  matplotlib's grace_hopper and a 1280x900 group scene with eight proxy heads pasted at 40-160 px.

Detection only (:class:`sdk_python.face_finder.FaceFinder`, the SDK's detection step): no estimator
or bundle is needed. Times: median of 5 runs after one warm-up, on whatever this machine is doing
(the load average is in the header).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# name -> (mode, min_confidence, checks, tile_size); checks: "none", "layout" (keypoint geometry and skin
# colour only) or "all" (and the face-mesh presence test: the SDK default)
CONFIGS: dict[str, tuple[str, float, str, int]] = {
    "before (short, >=0.5, no checks)": ("short", 0.5, "none", 0),
    "auto, >=0.6, layout checks only": ("auto", 0.6, "layout", 640),
    "short, >=0.6, all checks": ("short", 0.6, "all", 640),
    "full, >=0.6, all checks": ("full", 0.6, "all", 640),
    "after: auto, >=0.6, all checks (SDK default)": ("auto", 0.6, "all", 640),
}
MODE_ROWS: dict[str, tuple[str, float, str, int]] = {
    "before: short >=0.5, no checks": ("short", 0.5, "none", 0),
    "short": ("short", 0.6, "all", 0),
    "full (tiles 640)": ("full", 0.6, "all", 640),
    "auto (tiles 640, default)": ("auto", 0.6, "all", 640),
    "auto, tiles 320": ("auto", 0.6, "all", 320),
    "full, no tiles": ("full", 0.6, "all", 0),
}


def _finder(cfg: tuple[str, float, str, int]):
    from sdk_python.detector_models import fetch_model
    from sdk_python.face_finder import FaceFinder
    mode, thr, checks, tile = cfg
    finder = FaceFinder(mode, fetch_model, thr, checks=checks != "none", tile_size=tile)
    if checks == "layout" and finder.presence is not None:
        finder.presence.close()
        finder.presence = None
    return finder


def corpus_rates(per_kind: int) -> tuple[list[list[Any]], dict[str, Any]]:
    from benchmarks.face_corpus import negatives, positives
    samples = list(negatives(per_kind)) + list(positives(per_kind))
    finders = {name: _finder(cfg) for name, cfg in CONFIGS.items()}
    # counts[config][family] = [errors, n]
    counts: dict[str, dict[str, list[int]]] = {n: defaultdict(lambda: [0, 0]) for n in CONFIGS}
    wrong: dict[str, list[str]] = defaultdict(list)
    for s in samples:
        for name, f in finders.items():
            n_found = len(f.find(s.image).faces)
            err = (n_found > 0) if s.faces == 0 else (n_found == 0)
            c = counts[name][("neg: " if s.faces == 0 else "pos: ") + s.kind]
            c[0] += int(err)
            c[1] += 1
            if err:
                wrong[name].append(s.name)
    for f in finders.values():
        f.close()
    families = sorted({k for c in counts.values() for k in c}, key=lambda k: (not k.startswith("neg"), k))
    rows = []
    for fam in families:
        n = counts[next(iter(CONFIGS))][fam][1]
        rows.append([fam, n] + [f"{counts[c][fam][0] / n:.0%} ({counts[c][fam][0]})" for c in CONFIGS])
    for side, label in (("neg", "**false-positive rate, all negatives**"), ("pos", "**miss rate, all positives**")):
        tot = {c: [sum(v[0] for k, v in counts[c].items() if k.startswith(side)),
                   sum(v[1] for k, v in counts[c].items() if k.startswith(side))] for c in CONFIGS}
        n = tot[next(iter(CONFIGS))][1]
        rows.append([label, n] + [f"**{tot[c][0] / n:.1%}** ({tot[c][0]})" for c in CONFIGS])
    raw = {c: {k: {"errors": v[0], "n": v[1]} for k, v in counts[c].items()} for c in CONFIGS}
    return rows, {"counts": raw, "wrong": wrong, "per_kind": per_kind, "configs": {k: list(v) for k, v in CONFIGS.items()}}


def _median_ms(fn, repeats: int = 5) -> float:
    from converters.latency import time_calls
    return float(np.median(time_calls(fn, warmup=1, runs=repeats)))


def mode_table() -> tuple[list[list[Any]], dict[str, Any]]:
    from benchmarks.face_corpus import group_scene, portraits
    images = dict(portraits())
    scene, placed = group_scene(0)
    images["group scene (8 heads, 40-160 px)"] = scene
    rows, raw = [], {}
    for name, cfg in MODE_ROWS.items():
        f = _finder(cfg)
        row: list[Any] = [name]
        for key, img in images.items():
            res = f.find(img)
            ms = _median_ms(lambda: f.find(img))
            cell = f"{len(res.faces)} ({ms:.0f} ms)"
            if key.startswith("group"):
                hits = sorted(w for (px, py, w) in placed if any(
                    px <= d.box.x + d.box.width / 2 <= px + w and py <= d.box.y + d.box.height / 2 <= py + w
                    for d in res.faces))
                cell = f"{len(hits)}/{len(placed)} ({ms:.0f} ms); sizes {','.join(map(str, hits)) or '-'}"
                raw[f"{name}|{key}|hit_sizes"] = hits
            raw[f"{name}|{key}"] = {"faces": len(res.faces), "ms": ms, "detectors": res.detectors}
            row.append(cell)
        f.close()
        rows.append(row)
    return rows, {"images": list(images), "placed": placed, "results": raw}


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import commit
    from benchmarks._report import RESULTS, write_report
    from sdk_python.native_logs import silence_native_logs
    silence_native_logs()
    ap = argparse.ArgumentParser(prog="python -m benchmarks detection", description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=20, help="images per generated family (default 20)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: benchmarks/results/)")
    a = ap.parse_args(argv)
    command = "python -m benchmarks detection " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))
    import os
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows, data = corpus_rates(a.per_kind)
    stamp = f"Code {commit()}, load average {load:.2f} at start, {time.perf_counter() - t0:.0f} s; command: `{command.strip()}`"
    notes = ("A negative counts as a false positive when any face is accepted; a positive as a miss when none is. "
             "Layout checks: keypoint geometry and skin colour (sdk_python/face_check.py); all checks: and the "
             "face-mesh presence test (sdk_python/face_presence.py, presence >= 0.5). Pasted positives are proxy faces "
             "110-220 px wide in 640-800 px scenes. Misnamed samples are listed in the JSON (`wrong`).")
    j, m = write_report("detection", {**data, "command": command.strip(), "commit": commit()},
                        ["family", "n"] + list(CONFIGS), rows, notes, out_dir=a.out, stamp=stamp)
    print(m.read_text())
    load = os.getloadavg()[0]
    rows, data = mode_table()
    stamp = f"Code {commit()}, load average {load:.2f} at start; command: `{command.strip()}`"
    notes = ("Cells: faces accepted (median ms of 5 runs, detection only, 2-core machine shared with other jobs). "
             "Group scene: faces found / pasted, and the pasted widths found.")
    j2, m2 = write_report("detection_modes", {**data, "command": command.strip(), "commit": commit()},
                          ["detector"] + data["images"], rows, notes, out_dir=a.out, stamp=stamp)
    print(m2.read_text())
    print(f"wrote {j}, {m}, {j2}, {m2}")


if __name__ == "__main__":
    main()
