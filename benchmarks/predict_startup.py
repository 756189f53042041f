"""What a user waits for: ``avatartool predict`` on 1 image and on N images in one call, this code and
(optionally) an older commit.

    python -m benchmarks.predict_startup BUNDLE [--before GIT_REF] [--images 50] [--repeats 3] [--out DIR]

Each measurement is one ``/usr/bin/time -v python -m toolchain.cli.main predict BUNDLE IMAGES... --json``
process: wall time, peak resident memory (``Maximum resident set size``), and the lines the process wrote
to stderr (TensorFlow / MediaPipe / LiteRT log noise; 0 is the goal). The images are the packaged
portraits (scikit-image's astronaut, matplotlib's grace_hopper), alternately, slightly rotated, written as
JPEGs. With ``--before REF`` the same commands run against a git worktree of REF, alternating with this
code so both see the same machine load. Writes ``results/predict_startup.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._report import RESULTS, write_report

ROOT = Path(__file__).resolve().parents[1]


def _images(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    from benchmarks.face_corpus import portraits
    ims = [Image.fromarray(a) for a in portraits().values()]
    out = []
    for i in range(n):
        p = folder / f"img{i:03d}.jpg"
        ims[i % len(ims)].rotate((i % 7) - 3, resample=Image.BILINEAR).save(p, quality=92)
        out.append(p)
    return out


def _run(code_root: Path, bundle: Path, images: list[Path]) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "toolchain.cli.main", "predict", "--bundle", str(bundle),
           *map(str, images), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=code_root,
                          env={"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2",
                               "HOME": str(Path.home()), "COLUMNS": "200"})
    err = proc.stderr
    cut = err.find("\tCommand being timed")
    own, timing = (err[:cut], err[cut:]) if cut >= 0 else (err, "")
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", timing)
    wall = (int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))) if m else float("nan")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing)
    try:
        res = json.loads(proc.stdout)
        ok = sum("result" in r for r in res)
    except ValueError:
        ok = 0
    return {"wall_s": wall, "peak_rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
            "stderr_lines": len([ln for ln in own.splitlines() if ln.strip()]), "answered": ok, "rc": proc.returncode}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.predict_startup", description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--before", help="a git ref to measure too (e.g. the commit before a change)")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    bundle = a.bundle.resolve()
    versions = {"this code": ROOT}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="predict-startup-") as tmp, \
            tempfile.TemporaryDirectory(prefix="predict-startup-wt-") as wt:
        images = _images(Path(tmp), a.images)
        if a.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", wt, a.before], check=True)
            versions = {f"before ({a.before})": Path(wt), **versions}
        try:
            runs: dict[str, list[dict]] = {}
            for _ in range(a.repeats):
                for n in (1, a.images):
                    for name, root in versions.items():
                        runs.setdefault(f"{name}|{n}", []).append(_run(root, bundle, images[:n]))
        finally:
            if a.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", wt], check=False)
    rows = []
    for key, rs in runs.items():
        name, n = key.split("|")
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "peak_rss_mb", "stderr_lines")}
        results[key] = {**med, "runs": rs}
        rows.append([name, n, f"{med['wall_s']:.2f}", f"{med['peak_rss_mb']:.0f}", f"{med['stderr_lines']:.0f}",
                     f"{min(r['answered'] for r in rs)}/{n}"])
    command = "python -m benchmarks.predict_startup " + " ".join(argv if argv is not None else sys.argv[1:])
    import os
    write_report("predict_startup", {"bundle": str(bundle), "results": results, "command": command},
                 ["code", "images", "wall s (median)", "peak RSS MB", "stderr lines", "answered"], rows,
                 notes=f"Median of {a.repeats} runs of `avatartool predict --bundle {bundle.name} IMAGES... --json` "
                       "(one process each, OMP_NUM_THREADS=2, default options: backend auto, detector as the code "
                       "defaults). stderr lines: what the process printed besides its answer (log noise).",
                 out_dir=a.out, stamp=f"Command: `{command}`; load average {os.getloadavg()[0]:.2f} at the end")
    print((a.out / "predict_startup.md").read_text())


if __name__ == "__main__":
    main()
