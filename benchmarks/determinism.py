"""How far training reproduces: the same tiny training run twice per thread count, in fresh processes.

    python -m benchmarks.determinism [--threads 1,2] [--n 64]

Renders ``--n`` alter vectors (seed 0) and 32 held-out renders (seed 5), then for each thread count
trains the ``tiny`` estimator preset twice (``OMP_NUM_THREADS`` and torch's thread count set in a new
process each time) and evaluates it. Reports a digest of the final weights and the metrics, so the
table says whether repeats are bit-identical and what a different thread count changes. Writes
``benchmarks/results/determinism.{json,md}``. Another machine cannot be measured from here.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from benchmarks._report import RESULTS, write_report


def _prepare(root: Path, n: int) -> None:
    from toolchain.pipeline.baseline import renders_to_dataset
    from toolchain.render import RenderConfig, render_folder
    render_folder(RenderConfig(engine="alter", n=n, seed=0, size=64, workers=0, masks=False), root / "renders")
    renders_to_dataset(root / "renders", root / "ds", n)
    render_folder(RenderConfig(engine="alter", n=32, seed=5, size=64, workers=0, masks=True), root / "heldout")


def _child(root: Path, name: str) -> dict:
    import torch
    from toolchain.estimator.train import preset, train
    from toolchain.evaluation.evaluate import evaluate
    warnings.simplefilter("ignore")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    out = root / name
    summary = train([root / "ds"], out, preset("tiny"), device="cpu")
    sd = torch.load(out / "estimator.pt", weights_only=True)["state_dict"]
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(sd.items()))).hexdigest()[:16]
    m = evaluate(out / "estimator.pt", root / "heldout", out / "eval")["metrics"]
    return {"run": name, "threads": torch.get_num_threads(), "weights_sha256_16": digest,
            "final_train_loss": summary["final"]["train_loss"], "mean_accuracy": m["mean_accuracy"],
            "render_l1": m["render_distance"]["masked_l1"]["mean"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.determinism", description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--child", nargs=2, metavar=("ROOT", "NAME"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(_child(Path(a.child[0]), a.child[1])), flush=True)
        return
    threads = [int(t) for t in a.threads.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="determinism-") as tmp:
        root = Path(tmp)
        _prepare(root, a.n)
        for t in threads:
            for rep in ("a", "b"):
                env = {**os.environ, "OMP_NUM_THREADS": str(t), "MKL_NUM_THREADS": str(t)}
                proc = subprocess.run([sys.executable, "-m", "benchmarks.determinism", "--child", tmp, f"t{t}{rep}"],
                                      capture_output=True, text=True, env=env, check=True)
                runs.append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
    by_t = {t: [r for r in runs if r["threads"] == t] for t in threads}
    same = {t: len({r["weights_sha256_16"] for r in rs}) == 1 for t, rs in by_t.items()}
    across = len({rs[0]["weights_sha256_16"] for rs in by_t.values()}) == 1
    metrics_across = len({(rs[0]["mean_accuracy"], rs[0]["render_l1"]) for rs in by_t.values()}) == 1
    rows = [[r["run"], r["threads"], r["weights_sha256_16"], f"{r['final_train_loss']:.6f}", f"{r['mean_accuracy']:.4f}",
             f"{r['render_l1']:.6f}"] for r in runs]
    verdict = ("; ".join(f"{t} thread(s): repeats {'bit-identical' if s else 'DIFFER'}" for t, s in same.items())
               + "; across thread counts: " + ("identical" if across else "different weights, "
                                                  + ("the same metrics" if metrics_across else "different metrics")))
    args = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m benchmarks.determinism", *(shlex.quote(s) for s in args)])
    _, md = write_report("determinism", {"runs": runs, "same_within_thread_count": same, "same_across": across,
                                         "command": command},
                         ["run", "threads", "weights sha256 (16)", "final train loss", "mean accuracy", "render L1"], rows,
                         notes=f"{verdict}. The `tiny` preset on {a.n} alter renders, evaluated on 32 held-out renders; "
                               "each run in a fresh process. Other machines are not covered by this table.",
                         stamp=f"command: `{command}`")
    print(md.read_text())


if __name__ == "__main__":
    main()
