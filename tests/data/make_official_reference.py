"""How tests/data/official_reference_16px.{json,safetensors} were made (not run by the tests).

Steps (CPU, the project venv's torch):
  1. Fetch the public source: github.com/seasonSH/SemanticStyleGAN at commit 5be7c3e; copy models/ to a
     scratch folder OUTSIDE this repository (its licence, CC BY-NC-SA 4.0, keeps its code out of ours).
  2. In that copy only, models/op/fused_act.py and models/op/upfirdn2d.py build a CUDA extension at import
     (``fused = load(...)``, ``upfirdn2d_op = load(...)``): replace each with ``= None``. Both files already
     route CPU tensors to their pure-PyTorch code, so nothing else changes.
  3. Run this script with that folder on sys.path: python make_official_reference.py /scratch/ssg OUT_PREFIX
It builds the public model with ``make_model(args)``, overwrites every learnable tensor and noise buffer
with the recipe in tests/test_official_reference.py (``official_weight``; FIR filter buffers are kept),
and records the outputs of ``forward([codes], input_is_latent=..., randomize_noise=False, return_all=True)``.
"""
import argparse
import json
import sys
import zlib

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, sys.argv[1])
from models import make_model  # noqa: E402  (the public source)

ARGS = argparse.Namespace(size=16, latent=16, n_mlp=2, channel_multiplier=2, seg_dim=3, local_layers=3,
                          local_channel=8, base_layers=1, depth_layers=2, coarse_size=8, coarse_channel=8,
                          min_feat_size=4, residual_refine=True, detach_texture=False, transparent_dims=[2])


def official_weight(key, shape):   # identical to the test's recipe
    x = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape).astype(np.float32)
    if key.endswith("modulation") or key.endswith("modulation.bias"):
        return 1.0 + 0.1 * x
    if key.endswith("bias") or key.endswith("noise.weight"):
        return 0.1 * x
    return x


def main(out: str) -> None:
    torch.manual_seed(0)
    g = make_model(ARGS, verbose=False).eval()
    sd = g.state_dict()
    g.load_state_dict({k: v.clone() if k.endswith("kernel") else torch.from_numpy(official_weight(k, tuple(v.shape)))
                       for k, v in sd.items()})
    z = torch.from_numpy(np.random.default_rng(1).standard_normal((2, ARGS.latent)).astype(np.float32))
    w = torch.from_numpy(np.random.default_rng(2).standard_normal((2, g.n_latent, ARGS.latent)).astype(np.float32))
    tensors = {"wplus": w, "z": z}
    with torch.no_grad():
        for name, codes, is_w in (("wplus", w, True), ("z", z, False)):
            rgb, seg, seg_coarse, _, _ = g([codes], input_is_latent=is_w, randomize_noise=False, return_all=True)
            tensors.update({f"{name}.image": rgb, f"{name}.seg": seg, f"{name}.seg_coarse": seg_coarse})
    save_file({k: v.contiguous() for k, v in tensors.items()}, out + ".safetensors")
    meta = {"args": vars(ARGS), "n_latent": g.n_latent, "g_ema_shapes": {k: list(v.shape) for k, v in sd.items()},
            "fixed_buffers": {k: v.flatten().tolist() for k, v in sd.items() if k.endswith("kernel")}}
    with open(out + ".json", "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[2])
