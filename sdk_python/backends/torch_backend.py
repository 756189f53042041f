"""torch backend: runs the exporter's TorchScript file (``estimator.torchscript.pt``) with torch alone.

The SDK never imports the training code: the exporter traces the estimator into TorchScript, whose outputs
are a tuple in the order recorded as ``outputs`` (in the bundle entry, and in the file's
``swiftavatar.json`` extra file). Useful for debugging and as the reference in benchmarks.
"""
from __future__ import annotations

import io
import json
import sys
from typing import Sequence

import numpy as np

from ..errors import BundleError
from .base import Backend, ModelFile

EXTRA_FILE = "swiftavatar.json"


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: ModelFile, output_names: Sequence[str], num_threads: int):
        super().__init__(model, output_names, num_threads)
        if "tensorflow" in sys.modules and "triton" not in sys.modules:
            # mediapipe imports tensorflow when it is installed; triton's native library loaded after
            # tensorflow's segfaults. CPU inference never needs triton, so hide it.
            sys.modules["triton"] = None  # type: ignore[assignment]
        import torch
        torch.set_num_threads(num_threads)
        self.torch = torch
        extra = {EXTRA_FILE: ""}
        try:
            self.module = torch.jit.load(io.BytesIO(model.read_bytes()), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # noqa: BLE001 - any load failure means a damaged or foreign file
            raise BundleError(f"torch cannot load {model.name} as TorchScript ({exc}); re-export it with "
                              "`avatartool export --formats torchscript`") from None
        self.module.eval()
        order = model.record.get("outputs")
        if order is None and extra[EXTRA_FILE]:
            order = json.loads(extra[EXTRA_FILE]).get("outputs")
        if not isinstance(order, list) or sorted(order) != sorted(self.output_names):
            raise BundleError(f"{model.name}: recorded output order {order} does not match the manifest's outputs "
                              f"{self.output_names}; re-export it")
        self.order = list(order)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            values = self.module(self.torch.from_numpy(x))
        return {n: v.float().numpy() for n, v in zip(self.order, values)}

    def close(self) -> None:
        self.module = None


def create(model: ModelFile, output_names: Sequence[str], num_threads: int) -> Backend:
    return TorchBackend(model, output_names, num_threads)
