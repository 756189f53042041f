"""GAN training speed resumed from a trained generator's checkpoint: float32 or bf16 autocast, with float32
denormals kept (the code before 0dc7851) or flushed to zero (``configure_cpu_math``).

    python -m benchmarks gan-speed RUN [--steps 30] [--threads 2] [--out DIR]

RUN is a ``python -m benchmarks g-real-size`` run (``RUN/g_real/checkpoint.pt``) or a build run
(``RUN/real_generator/gan/checkpoint.pt``). A trained checkpoint, not fresh weights, because the cost of a
step depends on the weights: fresh ones make almost no denormals, and a 33-step run from scratch (the
``gan`` table) never shows them. Each case runs in a process of its own, because the denormal mode is
per thread and OpenMP's workers copy it from the thread that starts them. Writes
``gan_speed.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
_IDENTITY_KEYS = ("generator", "train", "data", "n_images")


def find_checkpoint(run: Path) -> Path:
    for rel in ("g_real/checkpoint.pt", "real_generator/gan/checkpoint.pt", "checkpoint.pt"):
        if (run / rel).is_file():
            return run / rel
    raise SystemExit(f"error: no GAN checkpoint under {run} (looked for g_real/, real_generator/gan/ and the folder "
                     "itself); give a g-real-size run or a build run whose G_real was trained here")


def run_case(checkpoint: Path, precision: str, flush: bool, steps: int, threads: int) -> dict:
    """One case in this process: resume ``steps`` steps from ``checkpoint`` in a scratch folder."""
    import torch
    if flush:
        from toolchain.torch_utils import configure_cpu_math
        configure_cpu_math(threads)
    else:
        torch.set_num_threads(threads)
        torch.set_flush_denormal = lambda on: False   # as before 0dc7851: nothing set the flag
    from toolchain.generators.config import GeneratorConfig
    from toolchain.generators.train_real import GANTrainConfig, run_gan
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ident = ck["identity"]
    ident["train"]["precision"] = precision
    start = int(ck["step"])
    tcfg = GANTrainConfig(**{**ident["train"], "iters": start + steps, "log_every": 5, "sample_every": 10 ** 9,
                             "snapshot_every": 10 ** 9})
    meta = {k: v for k, v in ident.items() if k not in _IDENTITY_KEYS}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(ck, Path(tmp) / "checkpoint.pt")
        t0 = time.perf_counter()
        run_gan(ident["data"], tmp, GeneratorConfig.from_json(ident["generator"]), tcfg, run_meta=meta, device="cpu")
        wall = time.perf_counter() - t0
        rates = [r["it_per_s"] for r in map(json.loads, (Path(tmp) / "stats.jsonl").read_text().splitlines())
                 if r["step"] > start]
    steady = rates[1:] or rates   # the first window carries the start-up
    # what the main thread's mode really is, read back (the workers copied it at their start)
    zeroed = (torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0
    return {"precision": precision, "flush_denormals": flush, "denormal_reads_as_zero": zeroed,
            "from_step": start, "steps": steps,
            "it_per_s": statistics.median(steady), "windows_it_per_s": rates, "wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    from benchmarks.__main__ import commit
    from benchmarks._report import RESULTS, write_report
    ap = argparse.ArgumentParser(prog="python -m benchmarks gan-speed", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a g-real-size run or a build run with a trained G_real")
    ap.add_argument("--steps", type=int, default=30, help="steps timed per case (in windows of 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: benchmarks/results/)")
    ap.add_argument("--case", nargs=2, metavar=("PRECISION", "FLUSH"), help=argparse.SUPPRESS)  # one case, in a child
    a = ap.parse_args(argv)
    checkpoint = find_checkpoint(a.run)
    if a.case:
        print(json.dumps(run_case(checkpoint, a.case[0], a.case[1] == "1", a.steps, a.threads)))
        return
    results = []
    for precision, flush in CASES:
        cmd = [sys.executable, "-m", "benchmarks", "gan-speed", str(a.run), "--steps", str(a.steps), "--threads",
               str(a.threads), "--case", precision, "1" if flush else "0"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if done.returncode != 0:
            raise SystemExit(f"error: case {precision}, flush={flush} failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"[gan-speed] {precision}, denormals {'flushed' if flush else 'kept'}: "
              f"{results[-1]['it_per_s']:.2f} steps/s", flush=True)
    base = results[0]["it_per_s"]
    rows = [[r["precision"], "flushed" if r["flush_denormals"] else "kept", f"{r['it_per_s']:.2f}",
             f"{r['it_per_s'] / base:.1f}x"] for r in results]
    ck = __import__("torch").load(checkpoint, map_location="cpu", weights_only=True)
    gen, train = ck["identity"]["generator"], ck["identity"]["train"]
    args = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m benchmarks gan-speed", *(shlex.quote(s) for s in args)])
    _, m = write_report("gan_speed", {"checkpoint": str(checkpoint), "from_step": results[0]["from_step"],
                                      "generator": gen, "train": train, "threads": a.threads, "cases": results,
                                      "command": command},
                        ["arithmetic", "float32 denormals", "steps/s", "vs fp32, kept"], rows,
                        notes=f"{a.steps} full training steps (batch {train['batch_size']}, recipe as trained: R1 every "
                              f"{train['d_reg_every']}, path length every {train['g_reg_every']}) resumed from "
                              f"step {results[0]['from_step']} of `{checkpoint}` ({gen['size']} px, local channels "
                              f"{gen['local_channel']}), {a.threads} torch threads; steps/s is the median over windows "
                              "of 5 steps after the first. Each case ran alone in a fresh process.",
                        out_dir=a.out, stamp=f"Code {commit()}; command: `{command}`")
    print(m.read_text())


if __name__ == "__main__":
    main()
