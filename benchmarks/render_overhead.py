"""Render overhead: an external engine's own rate vs the same engine through ``avatartool render``.

    python -m benchmarks render-overhead [--n 1024] [--n0 64] [--size 256] [--repeats 3] [--out DIR] [--profile]

"Engine alone" drives the example engine (``examples/external_engine/badge_engine.py``) over the protocol
directly: start the process, hello, schema, then render requests of ``--batch-size`` vectors into a
scratch folder, until the last reply (the engine draws and writes its PNGs; nothing is read back).
"avatartool render" runs ``render_folder`` (what the ``render`` command calls) on the same vectors into
a fresh folder with 1 and 2 worker processes, end to end: engine and worker start-up, checking and
moving the engine's files, the vector index and the contact sheet.

Each path is timed at ``--n`` and at ``--n0`` images; the **steady rate** ``(n - n0) / (t(n) - t(n0))``
leaves out start-up and other one-off costs (process start, contact sheet), which the end-to-end rate
``n / t(n)`` includes. The target (issue 14) is a steady rate >= 80 % of the engine's own with one worker.

``--profile`` also runs the tool in-process (``--workers 0``) under cProfile and prints where the time
goes (the main thread's view). ``--before FILE`` adds the rows of an earlier result of this benchmark
(e.g. run on an older checkout) to the table, labelled with that result's commit; nothing earlier is
read unless asked.
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
    """Seconds from starting the engine to its reply to the last render request, driven directly."""
    t0 = time.perf_counter()
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
    ap.add_argument("--n", type=int, default=1024, help="images per long timing")
    ap.add_argument("--n0", type=int, default=64, help="images per short timing (start-up costs)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8, help="vectors per render request (render's default)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per row; the median is reported")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="render_overhead", help="result file stem")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the in-process tool path")
    ap.add_argument("--before", type=Path, help="an earlier result JSON of this benchmark to show next to this one")
    a = ap.parse_args(argv)
    command = "python -m benchmarks render-overhead " + " ".join(shlex.quote(x) for x in (argv if argv is not None
                                                                                         else sys.argv[2:]))
    from toolchain.engines.registry import create_engine
    spec = "cmd:" + " ".join(shlex.quote(x) for x in engine_command())
    with create_engine(spec) as engine:
        vectors = engine.sample(max(a.n, a.n0), 0)
    load = os.getloadavg()[0]
    paths = {"engine alone": lambda n: engine_alone(vectors[:n], a.size, a.batch_size),
             "avatartool render, 1 worker": lambda n: through_tool(spec, n, a.size, a.batch_size, 1),
             "avatartool render, 2 workers": lambda n: through_tool(spec, n, a.size, a.batch_size, 2)}
    samples: dict[str, dict[int, list[float]]] = {label: {a.n: [], a.n0: []} for label in paths}
    for _ in range(a.repeats):  # interleaved, so a change of machine load hits every row alike
        for label, timed in paths.items():
            for n in (a.n, a.n0):
                samples[label][n].append(timed(n))
    rows, runs, steady = [], [], {}
    for label, secs in samples.items():
        t_n, t_n0 = statistics.median(secs[a.n]), statistics.median(secs[a.n0])
        steady[label] = (a.n - a.n0) / max(t_n - t_n0, 1e-9)
        runs.append({"path": label, "n": a.n, "n0": a.n0, "size": a.size, "batch_size": a.batch_size,
                     "seconds_n": secs[a.n], "seconds_n0": secs[a.n0], "median_n": t_n, "median_n0": t_n0,
                     "end_to_end_images_per_s": a.n / t_n, "steady_images_per_s": steady[label]})
    base = steady["engine alone"]
    base_e2e = runs[0]["end_to_end_images_per_s"]
    for r in runs:
        r["steady_fraction_of_engine"] = r["steady_images_per_s"] / base
        r["end_to_end_fraction_of_engine"] = r["end_to_end_images_per_s"] / base_e2e
        rows.append([r["path"], f"{r['median_n']:.2f}", f"{r['median_n0']:.2f}", f"{r['steady_images_per_s']:.1f}",
                     f"{100 * r['steady_fraction_of_engine']:.0f} %", f"{r['end_to_end_images_per_s']:.1f}",
                     f"{100 * r['end_to_end_fraction_of_engine']:.0f} %"])
    before = None
    if a.before:
        before = json.loads(a.before.read_text())
        for r in before["runs"]:
            rows.append([f"{r['path']} — before, code {before['commit']}", f"{r['median_n']:.2f}", f"{r['median_n0']:.2f}",
                         f"{r['steady_images_per_s']:.1f}", f"{100 * r['steady_fraction_of_engine']:.0f} %",
                         f"{r['end_to_end_images_per_s']:.1f}", f"{100 * r['end_to_end_fraction_of_engine']:.0f} %"])
    stamp = (f"Code {commit()}, load average {load:.2f} at start (2 cores shared with other jobs: absolute rates "
             f"move with the load, the interleaved ratios much less), median of {a.repeats}; command: `{command}`")
    notes = ("Engine: examples/external_engine/badge_engine.py (image + mask per vector, PNGs written by the engine), "
             f"{a.size} px, {a.batch_size} vectors per request. Steady rate = (n - n0) / (t(n) - t(n0)), without "
             "start-up and one-off costs; end to end = n / t(n). Target: steady rate >= 80 % of the engine's own "
             "with 1 worker.")
    headers = ["path", f"t({a.n}) s", f"t({a.n0}) s", "steady images/s", "of engine", "end-to-end images/s",
               "of engine"]
    if before:
        notes += (f" Rows marked 'before' come from {a.before.name} (command `{before.get('command')}`, load average "
                  f"{before['machine']['load_average_1m']} at its start, {before['machine']['date']}); each set's "
                  "percentages are relative to its own engine-alone row.")
    write_report(a.name, {"runs": runs, "commit": commit(), "command": command, "before": before}, headers, rows,
                 notes, out_dir=a.out, stamp=stamp)
    print((a.out / f"{a.name}.md").read_text())
    if a.profile:
        print(profile_tool(spec, a.n, a.size, a.batch_size))


if __name__ == "__main__":
    main()
