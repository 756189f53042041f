"""The avatar estimator: a ResNet-18 trunk and one MLP head per output group, built from a schema.

One head predicts all continuous parameters at once (normalised to [0, 1]); each discrete parameter
has its own head producing logits. Input normalisation is part of the model config so exporters and
the SDK read it from one place.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
import warnings

import torch
from torch import nn

from sdk_python.contract import CONTINUOUS_HEAD  # the head's name is the exported output's name too

from ..errors import AvatarToolError
from ..schema import AvatarSchema

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EstimatorConfig:
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    head_hidden: int = 256
    schema: dict = field(default_factory=dict)   # AvatarSchema.to_json()

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "EstimatorConfig":
        return cls(input_size=int(d["input_size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   head_hidden=int(d["head_hidden"]), schema=d["schema"])


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class AvatarEstimator(nn.Module):
    """``forward(x)`` takes normalised images ``[B, 3, H, W]`` and returns ``{head name: tensor}``:
    ``"continuous"`` → ``[B, C]`` (only if the schema has continuous parameters) and one ``[B, K_i]``
    logit tensor per discrete parameter, keyed by parameter name."""

    def __init__(self, config: EstimatorConfig):
        super().__init__()
        from torchvision.models import resnet18
        self.config = config
        self.schema = AvatarSchema.from_json(config.schema)
        trunk = resnet18(weights=None)
        feat = trunk.fc.in_features
        trunk.fc = nn.Identity()
        self.backbone = trunk
        self.heads = nn.ModuleDict()
        if self.schema.continuous:
            self.heads[CONTINUOUS_HEAD] = _mlp(feat, config.head_hidden, len(self.schema.continuous))
        for p in self.schema.discrete:
            if p.name == CONTINUOUS_HEAD:
                raise AvatarToolError(f"a discrete parameter may not be called '{CONTINUOUS_HEAD}'")
            self.heads[p.name] = _mlp(feat, config.head_hidden, len(p.options))
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    @property
    def head_names(self) -> list[str]:
        return list(self.heads.keys())

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """``uint8 [B, 3, H, W]`` → float input as the model expects it."""
        return (images_uint8.float() / 255.0 - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)
        return {name: head(f) for name, head in self.heads.items()}


def load_backbone_weights(model: AvatarEstimator, path: str | Path | None) -> dict:
    """Load ImageNet (or any) ResNet-18 weights into the trunk.

    Returns a report dict for the run outputs. Without a path the trunk stays randomly initialised and
    a warning says so: ImageNet weights cannot be downloaded here.
    """
    if path is None:
        msg = ("no --backbone-weights given: training the ResNet-18 trunk from scratch (the paper starts from "
               "ImageNet weights; get torchvision's resnet18-f37072fd.pth and pass its path for paper-faithful results)")
        warnings.warn(msg, stacklevel=2)
        return {"pretrained": False, "path": None, "warning": msg}
    path = Path(path)
    if not path.is_file():
        raise AvatarToolError(f"--backbone-weights {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items() if not k.startswith("fc.")}
    own = model.backbone.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise AvatarToolError(f"--backbone-weights {path} is not a ResNet-18 state dict: "
                              f"missing {missing[:3]}, wrong shape {wrong[:3]}")
    _, unexpected = model.backbone.load_state_dict(state, strict=False)
    return {"pretrained": True, "path": str(path), "unexpected_keys": list(unexpected)}
