"""The backend interface and the model-file table it picks from."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

# model key in the bundle -> (backend, precision)
MODEL_KEYS = {
    "onnx": ("onnxruntime", "fp32"),
    "tflite_fp32": ("litert", "fp32"),
    "tflite_fp16": ("litert", "fp16"),
    "tflite_int8": ("litert", "int8"),
    "coreml": ("coreml", "fp32"),
    "coreml_fp16": ("coreml", "fp16"),
    "torch": ("torch", "fp32"),
}
# precision preference when the caller says "auto"
AUTO_PRECISION = {"onnxruntime": ("fp32",), "litert": ("int8", "fp16", "fp32"), "coreml": ("fp16", "fp32"),
                  "torch": ("fp32",)}


@dataclass
class ModelFiles:
    """Estimator model files by key (see :data:`MODEL_KEYS`)."""

    paths: dict[str, Path] = field(default_factory=dict)

    def for_backend(self, backend: str, precision: str = "auto") -> Optional[Path]:
        wanted = AUTO_PRECISION.get(backend, ()) if precision == "auto" else (precision,)
        for prec in wanted:
            for key, (b, p) in MODEL_KEYS.items():
                if b == backend and p == prec and key in self.paths:
                    return self.paths[key]
        return None


class Backend(abc.ABC):
    """Runs the estimator on one normalised image.

    Subclasses map the runtime's outputs to head names (``"continuous"`` and one per discrete
    parameter), whatever order or naming the exported file uses.
    """

    name: str = "base"
    precision: str = "fp32"

    def __init__(self, model_path: Path, output_names: Sequence[str], num_threads: int):
        self.model_path = Path(model_path)
        self.output_names = list(output_names)
        self.num_threads = num_threads

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Args: ``x``: float32 ``[1, 3, S, S]``, already normalised. Returns ``{head name: [1, K]}``."""

    def close(self) -> None:
        """Release the runtime (idempotent)."""

    def _by_position(self, values: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        if len(values) != len(self.output_names):
            from ..errors import BundleError
            raise BundleError(f"{self.model_path.name} has {len(values)} outputs, the manifest names "
                              f"{len(self.output_names)} ({self.output_names}): the bundle is inconsistent, re-export it")
        return dict(zip(self.output_names, values))
