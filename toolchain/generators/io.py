"""Our generator file format: ``NAME.safetensors`` (weights; the config JSON also in its metadata) plus
``NAME.json`` (the config, human-readable). Loading never unpickles anything."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file, safe_open

from ..atomic_io import atomic_write_json
from ..errors import AvatarToolError
from .config import GeneratorConfig
from .discriminator import DualBranchDiscriminator
from .generator import SemanticGenerator

FORMAT = "swiftavatar-semantic-stylegan/1"


def save_weights(path: str | Path, module: torch.nn.Module, cfg: GeneratorConfig, extra: dict[str, Any] | None = None) -> None:
    """Write ``path`` (.safetensors) and its sibling ``.json`` atomically."""
    path = Path(path)
    meta = {"format": FORMAT, "kind": type(module).__name__, "config": cfg.to_json(), **(extra or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"swiftavatar": json.dumps(meta)})
    tmp.replace(path)
    atomic_write_json(path.with_suffix(".json"), meta)


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise AvatarToolError(f"{path}: no such generator file")
    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get("swiftavatar")
    if raw is None:
        raise AvatarToolError(f"{path} is not a SwiftAvatar generator file (no 'swiftavatar' metadata); "
                              "official .pt checkpoints load with load_official_checkpoint")
    return json.loads(raw)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[SemanticGenerator, dict[str, Any]]:
    """Our ``generator.safetensors`` (+ JSON config), or an official SemanticStyleGAN ``.pt`` checkpoint."""
    if Path(path).suffix in (".pt", ".pth"):
        from .official_checkpoint import load_official_checkpoint
        g = load_official_checkpoint(path, device)
        return g.eval(), {"kind": "SemanticGenerator", "config": g.cfg.to_json(), "source": f"official checkpoint {path}"}
    meta = read_meta(path)
    if meta.get("kind") != "SemanticGenerator":
        raise AvatarToolError(f"{path} holds a {meta.get('kind')}, not a generator")
    g = SemanticGenerator(GeneratorConfig.from_json(meta["config"]))
    g.load_state_dict(load_file(str(path)))
    return g.to(device).eval(), meta


def load_discriminator(path: str | Path, device: str | torch.device = "cpu") -> tuple[DualBranchDiscriminator, dict[str, Any]]:
    meta = read_meta(path)
    d = DualBranchDiscriminator(GeneratorConfig.from_json(meta["config"]), use_seg=meta.get("use_seg", True))
    d.load_state_dict(load_file(str(path)))
    return d.to(device), meta
