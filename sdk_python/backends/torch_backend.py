"""torch backend: runs the exporter's ``torch.export`` program (``estimator.pt2``) with torch alone.

The SDK never imports the training code: the exporter saves the estimator as an exported program whose
outputs are a tuple in the order recorded as ``outputs`` (in the bundle entry, and in the file's
``swiftavatar.json`` extra file). Useful for debugging and as the reference in benchmarks.
"""
from __future__ import annotations

import io
import json
import sys
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import BundleError
from .base import Backend, ModelFile

EXTRA_FILE = "swiftavatar.json"


def load_program(data: bytes) -> tuple[Any, Optional[dict]]:
    """Load an exported program from bytes; returns (callable module, its swiftavatar.json or None)."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        # mediapipe imports tensorflow when it is installed; triton's native library loaded after
        # tensorflow's segfaults. CPU inference never needs triton, so hide it.
        sys.modules["triton"] = None  # type: ignore[assignment]
    import torch
    extra = {EXTRA_FILE: ""}
    program = torch.export.load(io.BytesIO(data), extra_files=extra)
    return program.module(), (json.loads(extra[EXTRA_FILE]) if extra[EXTRA_FILE] else None)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: ModelFile, output_names: Sequence[str], num_threads: int):
        super().__init__(model, output_names, num_threads)
        import torch
        torch.set_num_threads(num_threads)
        self.torch = torch
        try:
            self.module, embedded = load_program(model.read_bytes())
        except BundleError:
            raise
        except Exception as exc:  # noqa: BLE001 - any load failure means a damaged or foreign file
            raise BundleError(f"torch cannot load {model.name} as an exported program ({exc}); re-export it with "
                              "`avatartool export --formats torch`") from None
        order = model.record.get("outputs") or (embedded or {}).get("outputs")
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
