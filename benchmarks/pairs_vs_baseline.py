"""Does the paired data close the domain gap? The paper's Baseline (estimator trained on renders) against
SwiftAvatar (trained on G_real faces paired by inversion), at matched source resolution and training
budget, both evaluated on the held-out photo proxy.

    python benchmarks/pairs_vs_baseline.py [--n 2000] [--k 3] [--swift-epochs 2]

Every stage is an `avatartool` command that resumes or skips finished work, so a rerun after a crash
continues, and a rerun on finished outputs only rebuilds the report. Stages:

1. `pairs`: invert n renders (runs/gan/renders-alter-64, seed 0) into the trained tiny G_avatar
   (runs/gan/ft2-color), k augmented copies each -> runs/pairs-alter-ft2 (32 px faces);
2. `baseline`: the same n vectors (seed 0) rendered at 32 px, 8 epochs ("small") -> runs/baseline-alter-32;
3. `train` on the pairs for --swift-epochs epochs ("small"), about the Baseline's number of samples seen;
4. `proxy` eval sets at 128 and 32 px (same people, seed 0), and `eval` of both models on both.

Writes results/pairs_vs_baseline.{json,md}. Both trunks start from scratch (no ImageNet weights here),
and the perceptual loss is the weight-free fallback unless LPIPS weights are in the torch hub cache.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import write_report  # noqa: E402

TOOL = str(Path(sys.executable).with_name("avatartool"))


def run(*args: str) -> None:
    print("+ avatartool", " ".join(args), flush=True)
    subprocess.run([TOOL, *args], cwd=ROOT, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--swift-epochs", type=int, default=2)
    a = ap.parse_args()
    runs = ROOT / "runs"
    pairs, swift, base = runs / "pairs-alter-ft2", runs / "swift-alter-32", runs / "baseline-alter-32"
    run("pairs", "--engine", "alter", "--generators", str(runs / "gan/ft2-color"), "-n", str(a.n),
        "--renders", str(runs / "gan/renders-alter-64"), "-k", str(a.k), "--batch", "64", "--chunk", "100",
        "--out", str(pairs))
    run("baseline", "--engine", "alter", "-n", str(a.n), "--render-size", "32", "--config", "small", "--out", str(base))
    run("train", "--data", str(pairs), "--out", str(swift), "--config", "small", "--epochs", str(a.swift_epochs))
    sets = {"proxy 128 px": runs / "eval-proxy-alter", "proxy 32 px": runs / "eval-proxy-alter-32"}
    for name, size in (("eval-proxy-alter", "128"), ("eval-proxy-alter-32", "32")):
        run("proxy", "--engine", "alter", "-n", "300", "--seed", "0", "--size", size, "--out", str(runs / name))
    models = {"Baseline (renders)": base / "train" / "estimator.pt", "SwiftAvatar (pairs)": swift / "estimator.pt"}
    index = json.loads((pairs / "index.json").read_text())
    results: dict = {"n_sources": a.n, "k": a.k, "swift_epochs": a.swift_epochs,
                     "pairs": {**index["meta"]["progress"], "samples": sum(s["count"] for s in index["shards"])},
                     "evals": {}}
    for mname, model in models.items():
        for sname, sdir in sets.items():
            out = model.parent / f"eval-{sdir.name}"
            if not (out / "eval.json").is_file():
                run("eval", "--model", str(model), "--set", str(sdir))
            results["evals"][f"{mname} | {sname}"] = json.loads((out / "eval.json").read_text())["metrics"]
    params = list(next(iter(results["evals"].values()))["accuracy"])
    header = ["parameter"] + [k.replace(" | ", ", ") for k in results["evals"]]
    rows = [[p] + [f"{e['accuracy'][p]:.3f}" for e in results["evals"].values()] for p in params]
    rows.append(["mean accuracy"] + [f"{e['mean_accuracy']:.3f}" for e in results["evals"].values()])
    rows.append(["masked render L1"] + [f"{e['render_distance']['masked_l1']['mean']:.4f}" for e in results["evals"].values()])
    prog = results["pairs"]
    _, mp = write_report("pairs_vs_baseline", results, header, rows,
                         notes=f"Pairs: {a.n} sources, {len(prog['dropped'])} dropped by the quality filter, "
                               f"{prog['samples']} samples (1 + {a.k} per kept source). Baseline: {a.n} renders x 8 "
                               f"epochs; SwiftAvatar: {prog['samples']} samples x {a.swift_epochs} epochs. Both from "
                               "scratch, 112 px input, 32 px sources.")
    print(mp.read_text())


if __name__ == "__main__":
    main()
