"""Every benchmark table from one build run, or the ablation (paper Table 3) on our own data.

    python -m benchmarks RUN [--quick] [--only render,gan,...] [--out DIR]
    python -m benchmarks ablation --engine alter [--preset smoke] [--run DIR] [--set SECTION.FIELD=VALUE ...]
    python -m benchmarks detection [--per-kind 20]     (face detection: false positives, misses, modes)
    python -m benchmarks quality                        (input-quality measures: clean vs degraded photos)
    python -m benchmarks render-overhead [--n 1024] [--n0 64] [--size 256] [--profile]
    python -m benchmarks sdk-load BUNDLE [--before GIT_REF]     (estimator creation: time, memory, temp files)
    python -m benchmarks sdk-stability BUNDLE                   (answers under jitter and mirroring, crop drift)
    python -m benchmarks mesh-keypoints [--proxies 40]          (face-mesh vs detector keypoints: offsets, framing)
    python -m benchmarks g-real-size [--size 64] [--steps 2250]  (G_real at another size: faces found vs the photos)
    python -m benchmarks g-fit [--variant NAME:FIELD=VALUE,...]  (generator variants fitted to a few photos)
    python -m benchmarks seeds RUN RUN RUN [--name NAME]      (method vs Baseline over builds that differ in seed)
    python -m benchmarks inversion-terms RUN [--mask-weights 0,0.3]  (the inversion's part-map term: what pairs carry)

Each table is measured now (nothing is read from an earlier benchmark result) and written as
``<out>/<name>.json`` + ``.md`` (+ ``.png`` plots), stamped with the run, the code commit, the command and
the machine load at its start. The default ``--out`` is ``benchmarks/results/``, the committed results.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from benchmarks._report import RESULTS, load_note, write_report  # noqa: E402
from toolchain.atomic_io import save_figure_atomic  # noqa: E402

STANDALONE = {"ablation": "ablation", "detection": "detection", "quality": "quality",
              "render-overhead": "render_overhead", "sdk-load": "sdk_load", "sdk-stability": "sdk_stability",
              "mesh-keypoints": "mesh_keypoints", "g-real-size": "g_real_size", "g-fit": "g_fit",
              "seeds": "seeds", "gan-speed": "gan_speed", "inversion-terms": "inversion_terms"}
TABLES = ("render", "gan", "gan_fit", "face_blur", "inversion", "pairs", "pair_measures", "export_latency", "sdk_latency", "accuracy")


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out + ("+changes" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tables(run_dir: Path, quick: bool, only: list[str], out: Path) -> list[Path]:
    import os
    from benchmarks.suite.common import BuildRun
    build = BuildRun.open(run_dir)
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    written = []
    for name in only:
        load = os.getloadavg()[0]
        print(f"[{name}] measuring ...", flush=True)
        t0 = time.perf_counter()
        table = importlib.import_module(f"benchmarks.suite.{name}").run(build, quick)
        stamp = (f"Build run `{build.root}` ({build.cfg.engine}, preset {build.cfg.preset}), code {commit()}, "
                 f"{load_note(load)}, {time.perf_counter() - t0:.0f} s; command: `{command}`"
                 + (" (**--quick**: smoke-sized samples, not for comparison)" if quick else ""))
        data = {**table.data, "build": build.describe(), "commit": commit(), "command": command, "quick": quick}
        j, m = write_report(table.name, data, table.headers, table.rows, table.notes, out_dir=out, stamp=stamp)
        for stem, fig in table.plots.items():
            save_figure_atomic(out / f"{stem}.png", fig)
            with open(m, "a") as f:
                f.write(f"\n![{stem}]({stem}.png)\n")
            written.append(out / f"{stem}.png")
        written += [j, m]
        print(m.read_text(), flush=True)
    return written


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in STANDALONE:   # benchmarks that measure something other than a build run's tables
        importlib.import_module(f"benchmarks.{STANDALONE[argv[0]]}").main(argv[1:])
        return
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a build run directory (avatartool build --run DIR)")
    ap.add_argument("--quick", action="store_true", help="few samples per table (tests); not for comparison")
    ap.add_argument("--only", default=",".join(TABLES), help=f"comma list of: {', '.join(TABLES)}")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: benchmarks/results/)")
    a = ap.parse_args(argv)
    only = [t.strip() for t in a.only.split(",") if t.strip()]
    bad = [t for t in only if t not in TABLES]
    if bad:
        ap.error(f"unknown table(s) {', '.join(bad)}; choose from {', '.join(TABLES)}")
    from toolchain.errors import AvatarToolError
    from toolchain.torch_utils import configure_cpu_math
    configure_cpu_math()
    try:
        files = run_tables(a.run, a.quick, only, a.out)
    except AvatarToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
