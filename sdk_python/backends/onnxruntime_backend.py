"""onnxruntime (CPU) backend."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BundleError
from .base import Backend


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path: Path, output_names: Sequence[str], num_threads: int):
        super().__init__(model_path, output_names, num_threads)
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = num_threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BundleError(f"onnxruntime cannot load {model_path} ({exc}); the ONNX file is damaged or too new") from None
        self.input_name = self.session.get_inputs()[0].name
        self.session_outputs = [o.name for o in self.session.get_outputs()]
        # Exporters name outputs after the heads; if they did not, fall back to the manifest's order.
        self.by_name = set(self.output_names) <= set(self.session_outputs)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.by_name:
            vals = self.session.run(self.output_names, {self.input_name: x})
            return dict(zip(self.output_names, vals))
        return self._by_position(self.session.run(None, {self.input_name: x}))

    def close(self) -> None:
        self.session = None


def create(model_path: Path, output_names: Sequence[str], num_threads: int) -> Backend:
    return OnnxRuntimeBackend(model_path, output_names, num_threads)
