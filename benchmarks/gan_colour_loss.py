"""Does the colour-matching loss work? Hair and skin colour distance between G_real(z) and G_avatar(z)
over shared latents, for G_avatar finetuned with and without L_color (same steps, same seed).

    python benchmarks/gan_colour_loss.py --real runs/gan/real-tiny --avatar runs/gan/ft-color runs/gan/ft-nocolor
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402

from toolchain.generators.finetune import colour_distance  # noqa: E402
from toolchain.generators.io import load_generator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--real", required=True, help="G_real run folder (holds generator.safetensors)")
    ap.add_argument("--avatar", nargs="+", required=True, help="finetune run folders to compare")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    g_real, _ = load_generator(Path(args.real) / "generator.safetensors")
    runs, rows = {}, []
    for run in args.avatar:
        g_avatar, _ = load_generator(Path(run) / "generator.safetensors")
        info = json.loads((Path(run) / "run.json").read_text())
        d = colour_distance(g_real, g_avatar, n=args.n, seed=args.seed)
        runs[run] = {**d, "colour_weight": info.get("colour_weight"), "steps": info.get("steps_done")}
        rows.append((run, info.get("colour_weight"), info.get("steps_done"), f"{d['hair']:.4f}", f"{d['skin']:.4f}"))
        print(rows[-1])
    real_info = json.loads((Path(args.real) / "run.json").read_text())
    write_report("gan_colour_loss", {"runs": runs, "real": args.real, "real_steps": real_info.get("steps_done"),
                                     "n_latents": args.n, "seed": args.seed},
                 ("G_avatar run", "colour weight", "steps", "hair distance", "skin distance"), rows,
                 notes=f"G_real: {args.real} ({real_info.get('steps_done')} steps). Mean Euclidean RGB distance in [0, 1] "
                       f"between the part mean colours of G_real(z) and G_avatar(z) over {args.n} shared latents (seed "
                       f"{args.seed}, const noise), each colour over its own generator's segmentation.")


if __name__ == "__main__":
    main()
