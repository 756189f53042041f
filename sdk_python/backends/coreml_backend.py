"""CoreML backend (macOS only: coremltools predicts only there)."""
from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BackendUnavailableError, BundleError
from .base import Backend, ModelFile


class CoreMLBackend(Backend):
    name = "coreml"

    def __init__(self, model: ModelFile, output_names: Sequence[str], num_threads: int):
        super().__init__(model, output_names, num_threads)
        if sys.platform != "darwin":
            raise BackendUnavailableError("CoreML models run only on macOS; use onnxruntime or litert here")
        import coremltools as ct
        path, self._member_tmp = model.local_path()
        if path.suffix == ".zip":  # bundles store the .mlpackage folder zipped
            self._tmp = tempfile.TemporaryDirectory(prefix="swiftavatar-coreml-")
            with zipfile.ZipFile(path) as z:
                z.extractall(self._tmp.name)
            path = next(Path(self._tmp.name).glob("*.mlpackage"))
        try:
            self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL)
        except Exception as exc:
            raise BundleError(f"CoreML cannot load {model.name} ({exc})") from None
        spec = self.model.get_spec()
        self.input_name = spec.description.input[0].name
        # the exporter's models take an RGB image (0-255, normalised inside: converters/coreml_export.py)
        self.image_input = spec.description.input[0].type.WhichOneof("Type") == "imageType"
        self.model_outputs = [o.name for o in spec.description.output]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.image_input:
            from PIL import Image
            feed = Image.fromarray(self.pixels(x))
        else:
            feed = x.astype(np.float32)
        out = self.model.predict({self.input_name: feed})
        return {n: np.asarray(out[n], np.float32) for n in self.output_names}


def create(model: ModelFile, output_names: Sequence[str], num_threads: int) -> Backend:
    return CoreMLBackend(model, output_names, num_threads)
