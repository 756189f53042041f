"""onnxruntime (CPU) backend."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import BundleError
from .base import Backend, ModelFile


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: ModelFile, output_names: Sequence[str], num_threads: int):
        super().__init__(model, output_names, num_threads)
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = num_threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # From a file, not bytes: onnxruntime copies an in-memory model while parsing it (twice the model in
        # memory at once, measured in benchmarks/results/sdk_load.md), so a bundle member is extracted alone.
        path, self._member_tmp = model.local_path()
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BundleError(f"onnxruntime cannot load {model.name} ({exc}); the ONNX file is damaged or too new") from None
        self.input_name = self.session.get_inputs()[0].name
        session_outputs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in self.output_names if n not in session_outputs]
        if missing:
            raise BundleError(f"{model.name} has no outputs named {missing} (it has {session_outputs}): the model does "
                              "not follow the SwiftAvatar contract; re-export it with `avatartool export`")

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: x})))

    def close(self) -> None:
        self.session = None
        if self._member_tmp is not None:
            self._member_tmp.cleanup()
            self._member_tmp = None


def create(model: ModelFile, output_names: Sequence[str], num_threads: int) -> Backend:
    return OnnxRuntimeBackend(model, output_names, num_threads)
