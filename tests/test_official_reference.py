"""Our official-checkpoint loader and forward pass against the public SemanticStyleGAN source.

The other official-checkpoint tests build their "official" checkpoints from our own spec, so they
cannot catch a mistake in it. The fixture here was computed once by *running* the public source
(github.com/seasonSH/SemanticStyleGAN at commit 5be7c3e, models/ on CPU: the CUDA extension import
replaced by the CPU code paths the same files already contain), on a tiny configuration:

* ``tests/data/official_reference_16px.json``: the ``args`` used, every ``g_ema`` key with the shape the
  public model gave it, and its fixed FIR-filter buffers;
* ``tests/data/official_reference_16px.safetensors``: two W+ codes and two z codes, and the public model's
  outputs for them (image, segmentation, coarse segmentation in [-1, 1]) with ``randomize_noise=False``.

Weights: a random init of this size would not fit a small fixture (the render net has 512 channels at
every size up to 32 px), so every learnable tensor and noise buffer was overwritten with the recipe in
:func:`official_weight` (repeated here) before the outputs were computed; the filter buffers are the
model's own. Only numbers were taken from the public source (CC BY-NC-SA 4.0); none of its code is here.
"""
from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from toolchain.generators.official_checkpoint import config_from_args, load_official_checkpoint, official_spec

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "official_reference_16px.json").read_text())
# float32 on CPU; the differences are rounding: max |diff| 2.9e-6 (image), 2.3e-6 (seg) when pinned
ATOL, RTOL = 2e-4, 1e-4


def official_weight(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normals from numpy's PCG64 seeded with crc32(key); modulations 1 + 0.1 N (as their
    init of 1 would be), biases and noise strengths 0.1 N."""
    x = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape).astype(np.float32)
    if key.endswith("modulation") or key.endswith("modulation.bias"):
        x = 1.0 + 0.1 * x
    elif key.endswith("bias") or key.endswith("noise.weight"):
        x = 0.1 * x
    return torch.from_numpy(x)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    shapes = {k: tuple(v) for k, v in REF["g_ema_shapes"].items()}
    g_ema = {k: (torch.tensor(REF["fixed_buffers"][k]).reshape(s) if k in REF["fixed_buffers"] else official_weight(k, s))
             for k, s in shapes.items()}
    path = tmp_path_factory.mktemp("official") / "tiny-official.pt"
    torch.save({"g_ema": g_ema, "args": argparse.Namespace(**REF["args"])}, path)
    return path, load_file(str(DATA / "official_reference_16px.safetensors"))


def test_spec_matches_the_public_model():
    cfg = config_from_args(REF["args"])
    assert official_spec(cfg) == {k: tuple(v) for k, v in REF["g_ema_shapes"].items()}
    assert cfg.n_latent == REF["n_latent"]


@pytest.mark.parametrize("inputs", ["wplus", "z"])
def test_forward_reproduces_the_public_model(reference, inputs):
    path, ref = reference
    g = load_official_checkpoint(path)
    with torch.no_grad():
        if inputs == "wplus":
            out = g.synthesize(ref["wplus"], noise_mode="const")
        else:
            out = g.sample(ref["z"], noise_mode="const")
    torch.testing.assert_close(out.image, ref[f"{inputs}.image"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.seg, ref[f"{inputs}.seg"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(2 * out.seg_coarse - 1, ref[f"{inputs}.seg_coarse"], atol=ATOL, rtol=RTOL)


def test_reference_catches_a_wrong_key_map(reference, monkeypatch):
    """The pinned outputs are sensitive: swapping two same-shaped local-net layers breaks the match."""
    path, ref = reference
    blob = torch.load(path, weights_only=False)
    sd = blob["g_ema"]
    a, b = "local_nets.1.linears.0.conv.weight", "local_nets.1.linears.1.conv.weight"
    sd[a], sd[b] = sd[b], sd[a]
    torch.save(blob, path.with_name("swapped.pt"))
    g = load_official_checkpoint(path.with_name("swapped.pt"))
    with torch.no_grad():
        out = g.synthesize(ref["wplus"], noise_mode="const")
    assert (out.image - ref["wplus.image"]).abs().max() > 1e-2
