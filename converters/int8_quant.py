"""Full-integer int8 TFLite from onnx2tf's saved model, with chosen layers kept in float.

onnx2tf's own ``-oiqt`` path is ``TFLiteConverter.from_saved_model`` with a representative dataset
(batch 1, ``TFLITE_BUILTINS_INT8`` + ``SELECT_TF_OPS``). :class:`Int8Quantizer` does the same conversion
from the saved model onnx2tf writes, but through TensorFlow Lite's ``QuantizationDebugger``: the model is
calibrated once, then re-quantized cheaply with any set of layers (named by their output tensor) left in
float. The debugger also measures each layer's quantization error on calibration images, which ranks the
layers worth keeping in float (:meth:`Int8Quantizer.layer_errors`).

Inputs are NHWC float images in [0, 1]; ``(x - mean) / std`` is applied here, exactly as at inference.
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from toolchain.errors import AvatarToolError

SIGNATURE = "serving_default"


@dataclass
class LayerError:
    tensor: str              # the layer's output tensor name (what a denylist names)
    op: str                  # TFLite op name
    rmse_over_scale: float   # RMS error of the quantized output in units of its quantization step
    mean_abs_error: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TensorFlow prints converter chatter to stdout/stderr; keep our callers' output readable."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _input_key(saved_model_dir: Path) -> str:
    import tensorflow as tf
    sig = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE]
    keys = list(sig.structured_input_signature[1].keys())
    if len(keys) != 1:
        raise AvatarToolError(f"{saved_model_dir}: expected one input in the '{SIGNATURE}' signature, found {keys}")
    return keys[0]


class Int8Quantizer:
    """Calibrate once on ``calibration`` (NHWC float in [0, 1]); quantize with any float denylist after.

    Args:
        saved_model_dir: the ``saved_model`` folder onnx2tf writes (``-osd`` or ``-oiqt``).
        per_channel: per-channel weight scales (onnx2tf's ``-qt per-channel``) or one scale per tensor.
    """

    def __init__(self, saved_model_dir: str | Path, calibration: np.ndarray, mean: Sequence[float],
                 std: Sequence[float], per_channel: bool = True) -> None:
        import tensorflow as tf
        self.dir = Path(saved_model_dir)
        if not (self.dir / "saved_model.pb").is_file():
            raise AvatarToolError(f"{self.dir}: no saved_model.pb (run onnx2tf with -osd)")
        calib = np.asarray(calibration, np.float32)
        if calib.ndim != 4 or calib.shape[-1] != 3 or calib.min() < 0 or calib.max() > 1:
            raise AvatarToolError(f"calibration data must be NHWC float in [0, 1], got {calib.shape}")
        self.x = ((calib - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)
        self.key = _input_key(self.dir)
        self.per_channel = per_channel
        conv = tf.lite.TFLiteConverter.from_saved_model(str(self.dir))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
        conv._experimental_disable_per_channel = not per_channel  # noqa: SLF001 - onnx2tf's -qt per-tensor
        conv.representative_dataset = self._dataset
        self.metric_images = min(len(self.x), 64)
        opts = tf.lite.experimental.QuantizationDebugOptions(
            layer_debug_metrics={"mean_abs_error": lambda diff: float(np.mean(np.abs(diff)))})
        with _quiet():
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=self._metric_dataset, debug_options=opts)

    def _dataset(self):
        for i in range(len(self.x)):
            yield {self.key: self.x[i:i + 1]}

    def _metric_dataset(self):
        # evenly spread over the calibration images: enough for per-layer statistics, cheap to run
        for i in np.linspace(0, len(self.x) - 1, self.metric_images).astype(int):
            yield [self.x[i:i + 1]]

    def quantize(self, float_tensors: Sequence[str] = ()) -> bytes:
        """The int8 model with float inputs/outputs; layers whose output tensor is in ``float_tensors`` stay float."""
        import tensorflow as tf
        with _quiet():
            self.debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_tensors))
            return bytes(self.debugger.get_nondebug_quantized_model())

    def layer_errors(self) -> list[LayerError]:
        """Each quantized layer's error against its float value on calibration images, worst first.

        The ranking metric is the RMS error of the layer's dequantized output divided by its quantization
        step: ~0.29 is pure rounding (uniform error of one step); much more means the layer's range or its
        inputs' errors hurt it.
        """
        import csv
        import tensorflow as tf
        with _quiet():
            self.debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                layer_debug_metrics={"mean_abs_error": lambda diff: float(np.mean(np.abs(diff)))})
            self.debugger.run()
            buf = io.StringIO()
            self.debugger.layer_statistics_dump(buf)
        out = []
        for row in csv.DictReader(io.StringIO(buf.getvalue())):
            scale = float(row.get("scale") or 0.0)
            mse = float(row.get("mean_squared_error") or 0.0)
            ratio = math.sqrt(mse) / scale if scale > 0 else 0.0
            out.append(LayerError(row["tensor_name"], row.get("op_name", "?"), ratio,
                                  float(row.get("mean_abs_error") or 0.0)))
        return sorted(out, key=lambda e: -e.rmse_over_scale)


def _ops_by_output(model: bytes) -> dict[str, str]:
    """{output tensor name: op name} of a TFLite flatbuffer."""
    from ai_edge_litert import schema_py_generated as fb
    m = fb.Model.GetRootAsModel(model, 0)
    codes = {}
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
        codes[i] = next((k for k, v in vars(fb.BuiltinOperator).items() if v == code and not k.startswith("_")), str(code))
    g = m.Subgraphs(0)
    out = {}
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        for j in range(op.OutputsLength()):
            out[g.Tensors(op.Outputs(j)).Name().decode()] = codes[op.OpcodeIndex()]
    return out


def float_op_count(model: bytes) -> dict[str, int]:
    """How many ops of ``model`` compute in float vs int8 (by their first output's type), plus (de)quantize ops."""
    from ai_edge_litert import schema_py_generated as fb
    m = fb.Model.GetRootAsModel(model, 0)
    g = m.Subgraphs(0)
    ops = _ops_by_output(model)
    counts = {"int8": 0, "float": 0, "quantize/dequantize": 0}
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        t = g.Tensors(op.Outputs(0))
        name = ops.get(t.Name().decode(), "")
        if name in ("QUANTIZE", "DEQUANTIZE"):
            counts["quantize/dequantize"] += 1
        elif t.Type() == fb.TensorType.FLOAT32:
            counts["float"] += 1
        else:
            counts["int8"] += 1
    return counts
