"""SemanticStyleGAN training speed (iterations/s) on this machine, through the real training loop.

    python benchmarks/gan_train_speed.py [--configs tiny,engine256] [--threads 1] [--device cpu]

Each configuration trains from scratch on random (image, mask) arrays for ``--steps`` steps (one log row
per step). "Plain" it/s is the mean over steps without a regulariser; the amortised rate weights the
measured step times at the paper frequencies (R1 every 16, path length every 4); it needs >= 17 steps,
so for the 256 px config (3 steps, minutes each on CPU) only step 0's time (R1 + path + warm-up) is given. The machine load average is recorded: on a
shared CPU, compare rows from the same run only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from toolchain.generators.config import generator_preset  # noqa: E402
from toolchain.generators.train_real import run_gan, train_preset  # noqa: E402

BATCH = {"tiny": 8, "small64": 8, "engine256": 2, "official256": 2}
STEPS = {"tiny": 33, "small64": 17, "engine256": 3, "official256": 3}


def bench(name: str, device: str, steps: int | None) -> dict:
    gcfg = generator_preset(name)
    b = BATCH.get(name, 2)
    steps = steps or STEPS.get(name, 5)
    tcfg = train_preset("tiny", iters=steps, batch_size=b, log_every=1, sample_every=10**9, snapshot_every=10**9)
    rng = np.random.default_rng(0)
    n = max(b, 8)
    images = rng.integers(0, 255, (n, gcfg.size, gcfg.size, 3), dtype=np.uint8)
    masks = rng.integers(0, gcfg.n_parts, (n, gcfg.size, gcfg.size)).astype(np.int64)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_gan(tmp, tmp, gcfg, tcfg, images=images, masks=masks, device=device)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in (Path(tmp) / "stats.jsonl").read_text().splitlines()]
    sec = [1 / r["it_per_s"] for r in rows]  # per-step seconds; rows[k] is step k
    plain = [s for k, s in enumerate(sec) if k % 4 and k > 0]
    plain_s = float(np.mean(plain))
    out = {"config": name, "size": gcfg.size, "parts": gcfg.n_parts, "batch": b, "steps": steps, "device": device,
           "threads": torch.get_num_threads(), "load_avg_1m": load, "step_seconds": sec, "plain_it_s": 1 / plain_s,
           "step0_seconds": sec[0], "amortised_it_s": None, "wall_s": wall}
    r1 = [s for k, s in enumerate(sec) if k % 16 == 0 and k > 0]
    path = [s for k, s in enumerate(sec) if k % 4 == 0 and k % 16]
    if r1 and path:  # paper frequencies: per 16 steps, 12 plain, 3 with path length, 1 with R1 + path length
        out["amortised_it_s"] = 16 / (12 * plain_s + 3 * float(np.mean(path)) + float(np.mean(r1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", default="tiny,engine256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = [bench(c, args.device, args.steps) for c in args.configs.split(",")]
    rows = [(r["config"], r["size"], r["parts"], r["batch"], r["device"], r["threads"], f"{r['plain_it_s']:.3f}",
             f"{r['amortised_it_s']:.3f}" if r["amortised_it_s"] else f"n/a (step 0: {r['step0_seconds']:.1f} s)",
             f"{(r['amortised_it_s'] or r['plain_it_s']) * r['batch']:.2f}", f"{r['load_avg_1m']:.1f}") for r in runs]
    j, m = write_report("gan_train_speed", {"runs": runs},
                        ["config", "px", "parts", "batch", "device", "threads", "it/s (no reg)", "it/s (amortised reg)",
                         "img/s", "load avg"], rows,
                        notes="Full training steps (D step, G step with mask loss, lazy R1 on image+mask every 16, "
                              "path length every 4, EMA). Shared 2-core machine: other jobs ran at the same time.")
    print(m.read_text())


if __name__ == "__main__":
    main()
