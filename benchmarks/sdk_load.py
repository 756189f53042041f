"""Time and memory of creating an SDK estimator from a bundle, for this code and (optionally) an older commit.

    python -m benchmarks sdk-load BUNDLE [--before GIT_REF] [--backends auto,litert] [--repeats 3] [--out DIR]

Each measurement is a fresh Python process that imports the SDK, then creates
``AvatarEstimator.create_from_bundle(BUNDLE, detection="none", backend=B)`` (default precision) and
closes it: reported are the creation time (imports excluded), the peak resident memory of the process
(``ru_maxrss``, imports included) and its growth during creation, and the bytes the SDK wrote to temporary
folders while creating it. ``--before REF`` measures the same bundle with the SDK of an older commit (checked
out into a temporary git worktree), so the effect of a change to bundle reading is measured, not inferred.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._report import RESULTS, write_report

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, resource, sys, tempfile, time, warnings
warnings.simplefilter("ignore")
tmp = tempfile.mkdtemp(prefix="sdkload-")
os.environ["TMPDIR"] = tmp
tempfile.tempdir = tmp

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def tmp_bytes():
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)

from sdk_python import AvatarEstimator
import numpy as np
before = rss_mb()
t0 = time.perf_counter()
est = AvatarEstimator.create_from_bundle(sys.argv[1], detection="none", backend=sys.argv[2])
created = time.perf_counter() - t0
written = tmp_bytes()
est.estimate(np.zeros((est.input_size, est.input_size, 3), np.uint8), color_order="rgb")
print(json.dumps({"create_s": created, "rss_before_mb": before, "rss_peak_mb": rss_mb(), "tmp_written_mb": written / 1e6,
                  "backend": est.backend_name, "precision": est.backend.precision}))
est.close()
"""


def measure(code_root: Path, bundle: Path, backend: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(bundle), backend], capture_output=True, text=True,
                              cwd=code_root, env={"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin",
                                                  "OMP_NUM_THREADS": "2", "HOME": str(Path.home())})
        if proc.returncode != 0:
            raise SystemExit(f"measurement failed in {code_root}:\n{proc.stderr[-2000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in runs) for k in ("create_s", "rss_before_mb", "rss_peak_mb", "tmp_written_mb")}
    return {**med, "backend": runs[0]["backend"], "precision": runs[0]["precision"], "runs": runs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks sdk-load", description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--before", help="a git ref whose SDK to measure too (e.g. the commit before a change)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="auto,litert", help="comma list of SDK backends to create")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    bundle = a.bundle.resolve()
    versions = {"this code": ROOT}
    with tempfile.TemporaryDirectory(prefix="sdkload-wt-") as wt:
        if a.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", wt, a.before], check=True)
            versions = {f"before ({a.before})": Path(wt), **versions}
        try:
            results = {f"{name}, backend={b}": measure(root, bundle, b, a.repeats)
                       for b in a.backends.split(",") for name, root in versions.items()}
        finally:
            if a.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", wt], check=False)
    rows = [[name, f"{r['backend']} {r['precision']}", f"{r['create_s']:.3f}", f"{r['rss_peak_mb'] - r['rss_before_mb']:.0f}",
             f"{r['rss_peak_mb']:.0f}", f"{r['tmp_written_mb']:.1f}"] for name, r in results.items()]
    command = "python -m benchmarks sdk-load " + " ".join(argv if argv is not None else sys.argv[1:])
    size = bundle.stat().st_size / 1e6
    write_report("sdk_load", {"bundle": str(bundle), "bundle_mb": size, "results": results, "command": command},
                 ["SDK", "model run", "create s (median)", "RSS growth MB", "peak RSS MB", "temp files MB"], rows,
                 notes=f"Bundle `{bundle.name}` ({size:.1f} MB). Median of {a.repeats} fresh processes each; 2 threads. "
                       "RSS growth = peak resident memory after creating the estimator and running one image minus "
                       "the peak after importing the SDK.",
                 out_dir=a.out, stamp=f"Command: `{command}`")
    print((a.out / "sdk_load.md").read_text())


if __name__ == "__main__":
    main()
