"""Render overhead: an external engine's own rate vs the same engine through ``avatartool render``.

    python -m benchmarks render-overhead [--n 512] [--size 256] [--repeats 3] [--out DIR] [--profile]

"Engine alone" drives the example engine (``examples/external_engine/badge_engine.py``) over the protocol
directly: hello, schema, then render requests of ``--batch-size`` vectors into a scratch folder, timed
from the first render request to the last reply (the engine draws and writes its PNGs; nothing is read
back). "avatartool render" runs ``render_folder`` (what the ``render`` command calls) on the same
vectors into a fresh folder with 1 and 2 worker processes, timed end to end: engine and worker start-up,
reading and checking the engine's files, writing images, masks, the vector index and the contact sheet.
The target (issue 14) is >= 80 % of the engine's own rate with one worker.

``--profile`` also runs the tool in-process (``--workers 0``) under cProfile and prints where the time
goes.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE = ROOT / "examples" / "external_engine" / "badge_engine.py"


def engine_command() -> list[str]:
    return [sys.executable, str(BADGE)]


def engine_alone(vectors: list[dict], size: int, batch_size: int) -> float:
    """Seconds the engine takes to answer every render request, driven over the protocol directly."""
    proc = subprocess.Popen(engine_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    scratch = Path(tempfile.mkdtemp(prefix="bench-engine-"))

    def ask(message: dict) -> dict:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"protocol": 1, **message}) + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        if reply.get("type") == "error":
            raise RuntimeError(reply)
        return reply

    try:
        ask({"type": "hello"})
        ask({"type": "schema"})
        t0 = time.perf_counter()
        for k in range(0, len(vectors), batch_size):
            ask({"type": "render", "id": k, "size": size, "masks": True, "out_dir": str(scratch),
                 "vectors": vectors[k:k + batch_size]})
        seconds = time.perf_counter() - t0
        return seconds
    finally:
        if proc.stdin:
            proc.stdin.close()  # end of input ends the engine (shutdown has no reply)
        proc.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)


def through_tool(spec: str, n: int, size: int, batch_size: int, workers: int) -> float:
    from toolchain.render.job import RenderConfig, render_folder
    out = Path(tempfile.mkdtemp(prefix="bench-tool-"))
    try:
        t0 = time.perf_counter()
        render_folder(RenderConfig(engine=spec, n=n, seed=0, size=size, workers=workers, batch_size=batch_size), out)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)


def profile_tool(spec: str, n: int, size: int, batch_size: int, top: int = 25) -> str:
    import cProfile
    import io
    import pstats
    from toolchain.render.job import RenderConfig, render_folder
    out = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    prof = cProfile.Profile()
    try:
        prof.enable()
        render_folder(RenderConfig(engine=spec, n=n, seed=0, size=size, workers=0, batch_size=batch_size), out)
        prof.disable()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    import os

    from benchmarks.__main__ import commit
    from benchmarks._report import RESULTS, write_report
    ap = argparse.ArgumentParser(prog="python -m benchmarks render-overhead", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="images per timing")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8, help="vectors per render request (render's default)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per row; the median is reported")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="render_overhead", help="result file stem")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the in-process tool path")
    a = ap.parse_args(argv)
    command = "python -m benchmarks render-overhead " + " ".join(shlex.quote(x) for x in (argv if argv is not None
                                                                                         else sys.argv[2:]))
    from toolchain.engines.registry import create_engine
    spec = "cmd:" + " ".join(shlex.quote(x) for x in engine_command())
    with create_engine(spec) as engine:
        vectors = engine.sample(a.n, 0)
    load = os.getloadavg()[0]
    samples: dict[str, list[float]] = {"engine alone": [], "avatartool render, 1 worker": [],
                                       "avatartool render, 2 workers": []}
    for _ in range(a.repeats):  # interleaved, so a load change hits every row alike
        samples["engine alone"].append(engine_alone(vectors, a.size, a.batch_size))
        samples["avatartool render, 1 worker"].append(through_tool(spec, a.n, a.size, a.batch_size, 1))
        samples["avatartool render, 2 workers"].append(through_tool(spec, a.n, a.size, a.batch_size, 2))
    base = a.n / statistics.median(samples["engine alone"])
    rows, runs = [], []
    for label, secs in samples.items():
        med = statistics.median(secs)
        rate = a.n / med
        runs.append({"path": label, "n": a.n, "size": a.size, "batch_size": a.batch_size, "seconds": secs,
                     "median_s": med, "images_per_s": rate, "fraction_of_engine": rate / base})
        rows.append([label, a.n, f"{med:.2f}", f"{rate:.1f}", f"{100 * rate / base:.0f} %"])
    stamp = (f"Code {commit()}, load average {load:.2f} at start, median of {a.repeats}; command: `{command}`")
    notes = ("Engine: examples/external_engine/badge_engine.py (image + mask per vector, PNGs written by the engine). "
             "Engine alone: protocol requests only, timed first request to last reply. avatartool render: "
             "`render_folder` end to end into a fresh folder (engine and worker start-up, checks, writes, contact "
             "sheet). Target: >= 80 % of the engine's own rate with 1 worker.")
    write_report(a.name, {"runs": runs, "commit": commit(), "command": command}, ["path", "images", "seconds (median)",
                 "images/s", "of engine alone"], rows, notes, out_dir=a.out, stamp=stamp)
    print((a.out / f"{a.name}.md").read_text())
    if a.profile:
        print(profile_tool(spec, a.n, a.size, a.batch_size))


if __name__ == "__main__":
    main()
