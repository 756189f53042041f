"""LiteRT (``ai-edge-litert``) backend for the bundle's TFLite files.

Output mapping, in order of preference:
1. a signature whose output keys are the head names (litert-torch exports keep them);
2. a ``serving_default`` signature with ``output_0..output_{n-1}``: onnx2tf writes these with
   ``output_i`` = ONNX output ``i`` (int8 files reorder their raw outputs, the signature does not);
3. no signature: raw outputs named ``Identity``, ``Identity_1``, ... in ONNX order (fp32/fp16 onnx2tf
   files), or named after the heads.
Inputs may be NCHW or NHWC (onnx2tf transposes) and float or quantized; both are handled here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BundleError
from .base import Backend


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

    def __init__(self, model_path: Path, output_names: Sequence[str], num_threads: int):
        super().__init__(model_path, output_names, num_threads)
        from ai_edge_litert.interpreter import Interpreter
        try:
            self.interp = Interpreter(model_path=str(model_path), num_threads=num_threads)
        except Exception as exc:
            raise BundleError(f"LiteRT cannot load {model_path} ({exc}); the TFLite file is damaged") from None
        self.runner = None
        sigs = self.interp.get_signature_list()
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            runner = self.interp.get_signature_runner(key)
            outs = list(sigs[key]["outputs"])
            if set(self.output_names) <= set(outs):
                self.sig_map = {n: n for n in self.output_names}
            elif sorted(outs) == sorted(f"output_{i}" for i in range(len(self.output_names))):
                self.sig_map = {n: f"output_{i}" for i, n in enumerate(self.output_names)}
            else:
                raise BundleError(f"{model_path.name}: signature outputs {outs} match neither the head names "
                                  f"{self.output_names} nor output_0..output_{len(self.output_names) - 1}")
            self.runner = runner
            self.in_key = list(sigs[key]["inputs"])[0]
            self.in_detail = runner.get_input_details()[self.in_key]
            self.out_details = runner.get_output_details()
        else:
            self.interp.allocate_tensors()
            self.in_detail = self.interp.get_input_details()[0]
            details = self.interp.get_output_details()
            names = [d["name"] for d in details]
            if set(self.output_names) <= set(names):
                order = [names.index(n) for n in self.output_names]
            else:
                def rank(n: str) -> int:
                    m = re.search(r"(?:Identity|StatefulPartitionedCall)(?:_(\d+))?(?::(\d+))?$", n)
                    if not m:
                        raise BundleError(f"{model_path.name}: cannot map output {n!r} to a head; re-export with a "
                                          "serving_default signature or head-named outputs")
                    return int(m.group(1) or m.group(2) or 0)
                ranks = [rank(n) for n in names]
                order = [ranks.index(i) for i in sorted(ranks)]
                if len(order) != len(self.output_names):
                    self._by_position(order)  # raises with a clear message
            self.out_index = {n: details[i]["index"] for n, i in zip(self.output_names, order)}
            self.out_detail = {n: details[i] for n, i in zip(self.output_names, order)}
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
        return {n: _dequantize(self.interp.get_tensor(i), self.out_detail[n]) for n, i in self.out_index.items()}

    def close(self) -> None:
        self.runner = None
        self.interp = None


def create(model_path: Path, output_names: Sequence[str], num_threads: int) -> Backend:
    return LiteRtBackend(model_path, output_names, num_threads)
