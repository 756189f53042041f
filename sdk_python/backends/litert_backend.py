"""LiteRT (``ai-edge-litert``) backend for the bundle's TFLite files.

Outputs are read where the exporter recorded them (``output_map`` in the bundle's model entry, or the same
map embedded in the file's ``swiftavatar_metadata``): ``{"signature": "serving_default" | None, "outputs":
{output name: signature key or tensor name}}``. Nothing is inferred from tensor names or positions.
Inputs may be NCHW or NHWC (onnx2tf transposes) and float or quantized; both are handled here.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import BundleError
from .base import Backend, ModelFile

METADATA_NAME = "swiftavatar_metadata"


def embedded_metadata(data: bytes) -> Optional[dict[str, Any]]:
    """The exporter's metadata embedded in a TFLite flatbuffer (``swiftavatar_metadata``), if any."""
    from ai_edge_litert import schema_py_generated as fb
    model = fb.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        if md.Name() == METADATA_NAME.encode():
            return json.loads(model.Buffers(md.Buffer()).DataAsNumpy().tobytes().decode("utf-8"))
    return None


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype in (np.float32, np.float16):
        return x.astype(dtype)
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale:
        raise BundleError("quantized TFLite input without quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32, copy=True)  # copy: the interpreter reuses its buffers
    scale, zero = detail.get("quantization", (0.0, 0))
    return (y.astype(np.float32) - zero) * scale


class LiteRtBackend(Backend):
    name = "litert"

    def __init__(self, model: ModelFile, output_names: Sequence[str], num_threads: int):
        super().__init__(model, output_names, num_threads)
        from ai_edge_litert.interpreter import Interpreter
        data = model.read_bytes()
        omap = model.record.get("output_map")
        try:
            if omap is None:
                omap = (embedded_metadata(data) or {}).get("output_map")
            self.interp = Interpreter(model_content=data, num_threads=num_threads)
        except Exception as exc:
            raise BundleError(f"LiteRT cannot load {model.name} ({exc}); the TFLite file is damaged") from None
        if not isinstance(omap, dict) or not isinstance(omap.get("outputs"), dict):
            raise BundleError(f"{model.name}: no output map recorded by the exporter (neither in the bundle nor in "
                              "the file's swiftavatar_metadata); re-export it with `avatartool export`")
        missing = [n for n in self.output_names if n not in omap["outputs"]]
        if missing:
            raise BundleError(f"{model.name}: its recorded output map lacks {missing}; re-export the bundle")
        self.runner = None
        if omap.get("signature"):
            sigs = self.interp.get_signature_list()
            if omap["signature"] not in sigs:
                raise BundleError(f"{model.name}: recorded signature {omap['signature']!r} is not in the file "
                                  f"(it has {list(sigs)}); re-export it")
            self.runner = self.interp.get_signature_runner(omap["signature"])
            self.sig_map = {n: omap["outputs"][n] for n in self.output_names}
            self.in_key = list(sigs[omap["signature"]]["inputs"])[0]
            self.in_detail = self.runner.get_input_details()[self.in_key]
            self.out_details = self.runner.get_output_details()
        else:
            self.interp.allocate_tensors()
            self.in_detail = self.interp.get_input_details()[0]
            by_name = {d["name"]: d for d in self.interp.get_output_details()}
            absent = [omap["outputs"][n] for n in self.output_names if omap["outputs"][n] not in by_name]
            if absent:
                raise BundleError(f"{model.name}: recorded output tensors {absent} are not in the file; re-export it")
            self.out_detail = {n: by_name[omap["outputs"][n]] for n in self.output_names}
        shape = list(self.in_detail["shape"])
        self.nhwc = len(shape) == 4 and shape[-1] == 3 and shape[1] != 3

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.nhwc:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        x = _quantize(x, self.in_detail)
        if self.runner is not None:
            res = self.runner(**{self.in_key: x})
            return {n: _dequantize(np.asarray(res[k]), self.out_details[k]) for n, k in self.sig_map.items()}
        self.interp.set_tensor(self.in_detail["index"], x)
        self.interp.invoke()
        return {n: _dequantize(self.interp.get_tensor(d["index"]), d) for n, d in self.out_detail.items()}

    def close(self) -> None:
        self.runner = None
        self.interp = None


def create(model: ModelFile, output_names: Sequence[str], num_threads: int) -> Backend:
    return LiteRtBackend(model, output_names, num_threads)
