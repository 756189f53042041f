"""torch eager backend, for debugging and as the reference in benchmarks (needs the toolchain)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BackendUnavailableError
from .base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model_path: Path, output_names: Sequence[str], num_threads: int):
        super().__init__(model_path, output_names, num_threads)
        import sys
        if "tensorflow" in sys.modules and "triton" not in sys.modules:
            # mediapipe imports tensorflow when it is installed; triton's native library loaded after
            # tensorflow's segfaults (torchvision -> torch._dynamo -> triton). CPU inference never needs
            # triton, so hide it: torch then reports "no triton" and carries on.
            sys.modules["triton"] = None  # type: ignore[assignment]
        import torch
        try:
            from toolchain.estimator.io import load_estimator
        except ImportError as exc:
            raise BackendUnavailableError(f"the torch backend needs the swiftavatar toolchain ({exc}): "
                                          "`pip install swiftavatar[train]`") from None
        torch.set_num_threads(num_threads)
        self.torch = torch
        self.model, _ = load_estimator(model_path)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(x))
        # exported outputs are named "continuous" and "logits_<parameter>"; the module's dict uses head names
        return {n: out[n if n in out else n.removeprefix("logits_")].float().numpy() for n in self.output_names}


def create(model_path: Path, output_names: Sequence[str], num_threads: int) -> Backend:
    return TorchBackend(model_path, output_names, num_threads)
