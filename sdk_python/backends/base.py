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
    "coreml": ("coreml", "int8"),          # estimator_int8.mlpackage (int8 weights)
    "coreml_fp16": ("coreml", "fp16"),
    "torch": ("torch", "fp32"),
}
# precision preference when the caller says "auto" (fastest first); only "validated" models qualify
AUTO_PRECISION = {"onnxruntime": ("fp32",), "litert": ("int8", "fp16", "fp32"), "coreml": ("fp16", "int8"),
                  "torch": ("fp32",)}
# parity statuses the exporter writes (converters/parity.py)
VALIDATED, BELOW, NOT_RUN, UNVALIDATED = "validated", "below threshold", "not run here", "unvalidated"
_LEGACY_STATUS = {"exported": NOT_RUN}          # bundles written before the parity gate
_FALLBACK_ORDER = ("fp32", "fp16", "int8")        # auto with nothing validated: the least quantised model


@dataclass
class Choice:
    """The model a backend will run: its key, file, precision, parity status and any warning to give."""

    key: str
    path: Path
    precision: str
    status: str
    warning: Optional[str] = None


@dataclass
class ModelFiles:
    """Estimator model files by key (see :data:`MODEL_KEYS`) and, by the same key, the parity row the exporter
    recorded (``status``: validated / below threshold / not run here / unvalidated; none recorded = unvalidated)."""

    paths: dict[str, Path] = field(default_factory=dict)
    parity: dict[str, dict] = field(default_factory=dict)

    def status(self, key: str) -> str:
        s = (self.parity.get(key) or {}).get("status") or UNVALIDATED
        return _LEGACY_STATUS.get(s, s)

    def _describe(self, key: str) -> str:
        row = self.parity.get(key) or {}
        if row.get("agreement") is not None and row.get("threshold") is not None:
            return f"agreement with torch {row['agreement']:.4f} < threshold {row['threshold']}"
        return row.get("reason") or self.status(key)

    def choose(self, backend: str, precision: str = "auto") -> Optional[Choice]:
        """The model ``backend`` runs for ``precision``, or ``None`` if the bundle has none it may run.

        ``auto`` takes the fastest *validated* model; with none validated, the least quantised model that is
        not below its threshold, with a warning; never a below-threshold model. An explicit precision gets
        its model whatever its status, with a warning if it is below its threshold.
        """
        keys = {p: k for k, (b, p) in MODEL_KEYS.items() if b == backend and k in self.paths}
        if precision != "auto":
            key = keys.get(precision)
            if key is None:
                return None
            warning = None
            if self.status(key) == BELOW:
                warning = (f"the {backend} {precision} model is below its parity threshold ({self._describe(key)}); "
                           f"running it because precision={precision!r} was requested: results may differ from "
                           "the trained model's")
            return Choice(key, self.paths[key], precision, self.status(key), warning)
        for prec in AUTO_PRECISION.get(backend, ()):
            if prec in keys and self.status(keys[prec]) == VALIDATED:
                return Choice(keys[prec], self.paths[keys[prec]], prec, VALIDATED)
        for prec in _FALLBACK_ORDER:
            if prec in keys and self.status(keys[prec]) != BELOW:
                key = keys[prec]
                skipped = [f"{p} ({self.status(k)})" for p, k in keys.items() if k != key]
                return Choice(key, self.paths[key], prec, self.status(key),
                              f"no validated {backend} model in the bundle: precision='auto' falls back to {prec}, "
                              f"whose parity status is '{self.status(key)}'"
                              + (f" (others: {', '.join(skipped)})" if skipped else ""))
        return None

    def for_backend(self, backend: str, precision: str = "auto") -> Optional[Path]:
        choice = self.choose(backend, precision)
        return None if choice is None else choice.path


class Backend(abc.ABC):
    """Runs the estimator on one normalised image.

    Subclasses map the runtime's outputs to head names (``"continuous"`` and one per discrete
    parameter), whatever order or naming the exported file uses.
    """

    name: str = "base"
    precision: str = "fp32"
    parity_status: str = "unvalidated"    # the exporter's parity status of the model file (set by create_backend)

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
