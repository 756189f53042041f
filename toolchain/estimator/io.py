"""Reading ``estimator.pt``: the file ``estimator.train`` writes (config + state dict + provenance)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import AvatarToolError
from .model import AvatarEstimator, EstimatorConfig


def load_estimator(path: str | Path, device: str | torch.device = "cpu") -> tuple[AvatarEstimator, dict[str, Any]]:
    """Load ``estimator.pt`` safely (``weights_only=True``); returns the model and the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise AvatarToolError(f"--model {path}: no such file (train one with `avatartool train` or `avatartool baseline`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = AvatarEstimator(EstimatorConfig.from_json(blob["config"]))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise AvatarToolError(f"{path} is not an avatartool estimator file: {exc}") from None
    return model.to(device).eval(), {k: v for k, v in blob.items() if k != "state_dict"}
