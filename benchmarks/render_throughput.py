"""Render throughput (images/s) of each built-in engine, with 1 and 2 worker processes.

    python benchmarks/render_throughput.py [--n 256] [--size 256]

Each configuration renders into a fresh folder through the same code path as `avatartool render`
(PNG encoding and atomic writes included); worker start-up is part of the measured time.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402

from toolchain.render import RenderConfig, render_folder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--engines", default="alter,morph")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    runs = []
    for engine in args.engines.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            out = Path(tempfile.mkdtemp(prefix="bench-render-"))
            try:
                cfg = RenderConfig(engine=engine, n=args.n, seed=0, size=args.size, workers=workers, batch_size=16)
                t0 = time.perf_counter()
                render_folder(cfg, out)
                seconds = time.perf_counter() - t0
            finally:
                shutil.rmtree(out, ignore_errors=True)
            runs.append({"engine": engine, "workers": workers, "n": args.n, "size": args.size, "seconds": seconds,
                         "images_per_s": args.n / seconds})
            print(f"{engine:6s} workers={workers}: {args.n / seconds:7.1f} images/s ({seconds:.2f} s)")
    rows = [(r["engine"], r["workers"], r["size"], r["n"], f"{r['seconds']:.2f}", f"{r['images_per_s']:.1f}") for r in runs]
    j, m = write_report("render_throughput", {"runs": runs},
                        ("engine", "workers", "px", "images", "seconds", "images/s"), rows,
                        notes="Includes worker start-up, PNG encoding of image + mask and atomic writes.")
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
