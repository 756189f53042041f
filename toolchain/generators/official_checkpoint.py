"""Official SemanticStyleGAN checkpoints (github.com/seasonSH/SemanticStyleGAN releases, e.g.
``CelebAMask-HQ-512x512.pt``): a pickled dict ``{"g_ema": state_dict, "args": argparse.Namespace, ...}``.

* ``official_spec(cfg)``: every official ``g_ema`` key and its shape, written from the public source
  (models/semantic_stylegan.py, models/utils.py, train.py at commit 067d2e65; facts only, see
  docs/semantic-stylegan-spec.md).
* ``key_map(cfg)``: official key -> our key (or None for fixed FIR-filter buffers we rebuild).
* ``load_official_checkpoint(path)``: ``torch.load(weights_only=True)`` with only ``argparse.Namespace``
  allow-listed, config from ``args``, weights through the key map with shape checks.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import AvatarToolError
from .config import OFFICIAL_PARTS, GeneratorConfig
from .generator import SemanticGenerator
from .layers import fir_kernel

Shape = tuple[int, ...]


def config_from_args(args: Any) -> GeneratorConfig:
    """The official argparse ``args`` (or a dict of them) -> our config."""
    a = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    n = int(a["seg_dim"])
    parts = OFFICIAL_PARTS if n == len(OFFICIAL_PARTS) else ("background",) + tuple(f"part{k}" for k in range(1, n))
    return GeneratorConfig(
        size=int(a["size"]), style_dim=int(a.get("latent", 512)), n_mlp=int(a.get("n_mlp", 8)), parts=parts,
        transparent=tuple(parts[k] for k in a.get("transparent_dims", ())), local_layers=int(a["local_layers"]),
        base_layers=int(a["base_layers"]), depth_layers=int(a["depth_layers"]), local_channel=int(a["local_channel"]),
        coarse_channel=int(a["coarse_channel"]), coarse_size=int(a["coarse_size"]), min_feat_size=int(a["min_feat_size"]),
        channel_base=16384 * int(a.get("channel_multiplier", 2)), channel_max=512,
        residual_refine=bool(a.get("residual_refine", False)))


def args_from_config(cfg: GeneratorConfig) -> argparse.Namespace:
    """Official-style ``args`` for ``cfg`` (used to build synthetic checkpoints in tests)."""
    if (cfg.channel_max != 512 or cfg.channel_base % 16384 or cfg.n_freqs != int(math.log2(cfg.size))
            or cfg.fourier_diagonal or cfg.coord_embedding):
        raise AvatarToolError("this config has no official equivalent (channels / Fourier frequencies differ)")
    return argparse.Namespace(
        size=cfg.size, latent=cfg.style_dim, n_mlp=cfg.n_mlp, channel_multiplier=cfg.channel_base // 16384,
        seg_dim=cfg.n_parts, local_layers=cfg.local_layers, base_layers=cfg.base_layers, depth_layers=cfg.depth_layers,
        local_channel=cfg.local_channel, coarse_channel=cfg.coarse_channel, coarse_size=cfg.coarse_size,
        min_feat_size=cfg.min_feat_size, residual_refine=cfg.residual_refine, detach_texture=False,
        transparent_dims=list(cfg.transparent_idx))


def official_spec(cfg: GeneratorConfig) -> dict[str, Shape]:
    """Official ``g_ema`` key -> shape for the architecture ``cfg`` describes."""
    d, c, cc = cfg.style_dim, cfg.local_channel, cfg.coarse_channel
    spec: dict[str, Shape] = {}
    for k in range(1, cfg.n_mlp + 1):  # style.0 is the parameter-free pixel norm
        spec[f"style.{k}.weight"] = (d, d)
        spec[f"style.{k}.bias"] = (d,)
    spec["pos_embed.weights"] = (c, cfg.coord_channels * (2 * cfg.n_freqs + 1), 1, 1)

    def to_out(prefix: str, in_ch: int, out_ch: int) -> None:  # ToRGB without style modulation
        spec[f"{prefix}.conv.weight"] = (out_ch, in_ch, 1, 1)
        spec[f"{prefix}.conv.modulation"] = (1, in_ch, 1, 1)
        spec[f"{prefix}.bias"] = (1, out_ch, 1, 1)
        spec[f"{prefix}.upsample.kernel"] = (4, 4)

    for i in range(cfg.n_parts):
        for j in range(cfg.local_layers):
            p = f"local_nets.{i}.linears.{j}"
            spec[f"{p}.conv.weight"] = (1, c, c, 1, 1)
            spec[f"{p}.conv.modulation.weight"] = (c, d)
            spec[f"{p}.conv.modulation.bias"] = (c,)
            spec[f"{p}.activate.bias"] = (c,)
        to_out(f"local_nets.{i}.to_feat", c, cc)
        if i > 0:
            to_out(f"local_nets.{i}.to_depth", c, 1)
    in_ch = cc
    n_stages = int(math.log2(cfg.size)) - int(math.log2(cfg.min_feat_size))
    for s in range(n_stages):
        size = cfg.min_feat_size * 2 ** (s + 1)
        out_ch = cfg.channels(size)
        if size // 2 == cfg.coarse_size:
            in_ch += cc
        for j, (i_ch, up) in enumerate(((in_ch, True), (out_ch, False))):
            p = f"render_net.convs.{2 * s + j}"
            spec[f"{p}.weight"] = (out_ch, i_ch, 3, 3)
            spec[f"{p}.modulation"] = (1, i_ch, 1, 1)
            if up:
                spec[f"{p}.blur.kernel"] = (4, 4)
            spec[f"{p}.noise.weight"] = (1,)
            spec[f"{p}.activate.bias"] = (out_ch,)
            spec[f"render_net.noises.noise_{2 * s + j}"] = (1, 1, size, size)
        to_out(f"render_net.to_rgbs.{s}", out_ch, 3)
        to_out(f"render_net.to_segs.{s}", out_ch, cfg.n_parts)
        in_ch = out_ch
    return spec


def _ours(key: str) -> str | None:
    """Official key -> our key; None for the fixed FIR buffers (rebuilt, checked on load)."""
    f = key.split(".")
    if f[-1] == "kernel":
        return None
    if f[0] == "style":
        return f"mapping.layers.{int(f[1]) - 1}.{f[2]}"
    if key == "pos_embed.weights":
        return "fourier.proj"
    if f[0] == "local_nets":
        i = f[1]
        if f[2] == "linears":
            j, rest = f[3], ".".join(f[4:])
            return {"conv.weight": f"local.{i}.layers.{j}.weight",
                    "conv.modulation.weight": f"local.{i}.layers.{j}.affine.weight",
                    "conv.modulation.bias": f"local.{i}.layers.{j}.affine.bias",
                    "activate.bias": f"local.{i}.layers.{j}.act.bias"}[rest]
        return f"local.{i}.{f[2]}." + {"conv.weight": "conv.weight", "conv.modulation": "conv.gain", "bias": "bias"}[".".join(f[3:])]
    if f[0] == "render_net":
        if f[1] == "noises":
            n = int(f[2].split("_")[1])
            return f"render.stages.{n // 2}." + ("noise_up" if n % 2 == 0 else "noise")
        if f[1] == "convs":
            n = int(f[2])
            conv = f"render.stages.{n // 2}." + ("conv_up" if n % 2 == 0 else "conv")
            return conv + "." + {"weight": "weight", "modulation": "gain", "noise.weight": "noise_strength",
                                 "activate.bias": "act.bias"}[".".join(f[3:])]
        if f[1] in ("to_rgbs", "to_segs"):
            head = "to_rgb" if f[1] == "to_rgbs" else "to_seg"
            return f"render.stages.{f[2]}.{head}." + {"conv.weight": "conv.weight", "conv.modulation": "conv.gain",
                                                       "bias": "bias"}[".".join(f[3:])]
    raise KeyError(key)


def key_map(cfg: GeneratorConfig) -> dict[str, str | None]:
    return {k: _ours(k) for k in official_spec(cfg)}


def _expected_kernel(key: str) -> torch.Tensor:
    return fir_kernel(gain=4.0)  # every g_ema filter is an upsampling one: [1,3,3,1] outer product / 64 * 4


def convert_official_state_dict(sd: dict[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Official ``g_ema`` state dict -> ours. Raises on missing/unexpected keys or shape mismatches."""
    spec = official_spec(cfg)
    missing, unexpected = sorted(set(spec) - set(sd)), sorted(set(sd) - set(spec))
    if missing or unexpected:
        raise AvatarToolError(f"checkpoint does not match the official layout for its args: missing {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    target = SemanticGenerator(cfg).state_dict()
    out = {}
    for k, ours in key_map(cfg).items():
        t = sd[k]
        if tuple(t.shape) != spec[k]:
            raise AvatarToolError(f"{k}: shape {tuple(t.shape)}, expected {spec[k]}")
        if ours is None:
            if not torch.allclose(t.float(), _expected_kernel(k)):
                raise AvatarToolError(f"{k}: unexpected filter kernel (only the [1,3,3,1] filter is supported)")
            continue
        out[ours] = t.reshape(target[ours].shape).clone()
    return out


def to_official_state_dict(g: SemanticGenerator) -> dict[str, torch.Tensor]:
    """Our generator -> official ``g_ema`` layout (the inverse map; FIR buffers regenerated)."""
    spec, ours = official_spec(g.cfg), g.state_dict()
    return {k: (_expected_kernel(k) if o is None else ours[o].reshape(spec[k]).clone()) for k, o in key_map(g.cfg).items()}


def safe_torch_load(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``; only ``argparse.Namespace`` is allow-listed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AvatarToolError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # pickle.UnpicklingError and friends: refuse, never fall back to weights_only=False
        raise AvatarToolError(f"{path}: refused to load (it holds objects outside the allow-list or is not a "
                              f"torch checkpoint): {str(exc).splitlines()[0]}") from None


def load_official_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> SemanticGenerator:
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or "g_ema" not in blob or "args" not in blob:
        raise AvatarToolError(f"{path}: not an official SemanticStyleGAN checkpoint (needs keys 'g_ema' and 'args')")
    cfg = config_from_args(blob["args"])
    g = SemanticGenerator(cfg)
    g.load_state_dict(convert_official_state_dict(blob["g_ema"], cfg))
    return g.to(device).eval()
