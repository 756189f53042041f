"""Full-integer int8 TFLite from onnx2tf's saved model, with chosen layers kept in float.

onnx2tf's own ``-oiqt`` path is ``TFLiteConverter.from_saved_model`` with a representative dataset
(batch 1, ``TFLITE_BUILTINS_INT8`` + ``SELECT_TF_OPS``). :class:`Int8Quantizer` does the same conversion
from the saved model onnx2tf writes, but through TensorFlow Lite's ``QuantizationDebugger``: the model is
calibrated once, then re-quantized cheaply with any set of layers (named by their output tensor) left in
float. The debugger also reports each layer's own quantization error (:meth:`Int8Quantizer.layer_errors`):
that names the layers a denylist understands, but as a *ranking* it was uninformative on the alter estimator
(every layer sits at the rounding floor). Which layers stay float is therefore decided end to end
(:func:`choose_float_layers`): each layer alone in float, the model scored against torch on images that were
not used to calibrate (benchmarks/results/int8_quality.md).

Inputs are NHWC float images in [0, 1]; ``(x - mean) / std`` is applied here, exactly as at inference.
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

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
        """The int8 model with float inputs/outputs; layers whose output tensor is in ``float_tensors`` stay float.

        The debugger's own non-debug path (``options = ...`` then ``get_nondebug_quantized_model()``) quantizes
        twice: its options setter rebuilds the instrumented debug model each time, which a candidate never needs
        (about half of each call's time). This is the one ``mlir_quantize`` call that path ends in, with the
        same arguments, on the debugger's calibrated model: the bytes are the same (tests/test_int8_quantizer.py)."""
        from tensorflow.lite.python import convert
        with _quiet():
            return bytes(convert.mlir_quantize(self.debugger.calibrated_model, disable_per_channel=not self.per_channel,
                                               fully_quantize=False, enable_numeric_verify=False,
                                               denylisted_ops=None, denylisted_nodes=list(float_tensors)))

    def layer_errors(self) -> list[LayerError]:
        """Each quantized layer's error against its float value on calibration images, worst first.

        The ranking metric is the RMS error of the layer's dequantized output divided by its quantization
        step: ~0.29 is pure rounding (uniform error of one step); much more means the layer's range or its
        inputs' errors hurt it.
        """
        import csv
        with _quiet():   # the debug model built with the metrics at construction: quantize() never replaces it
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


# ----- which layers stay in float: decided by measurement ------------------------------------------------
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def compute_layers(errors: Sequence[LayerError], ops: Sequence[str] = COMPUTE_OPS) -> list[str]:
    """The weight-carrying layers among :meth:`Int8Quantizer.layer_errors` (their names are the ones a denylist
    understands: the final model renames some outputs, e.g. a logit layer's int8 output before its DEQUANTIZE).

    Only these are candidates: measured on the alter estimator, keeping an ADD, MEAN or PAD in float changed
    nothing (they only requantize), while each weight layer's rounding adds error.
    """
    return [e.tensor for e in errors if e.op in ops]


def output_tensor_names(model: bytes) -> list[str]:
    """Names of the tensors a TFLite model's signatures (or graph) output; in the debugger's namespace these are
    the layers that produce the model's outputs (here: each head's logit layer)."""
    from ai_edge_litert import schema_py_generated as fb
    m = fb.Model.GetRootAsModel(model, 0)
    g = m.Subgraphs(0)
    if m.SignatureDefsLength():
        sig = m.SignatureDefs(0)
        idx = [sig.Outputs(i).TensorIndex() for i in range(sig.OutputsLength())]
    else:
        idx = [g.Outputs(i) for i in range(g.OutputsLength())]
    return [g.Tensors(i).Name().decode() for i in idx]


def head_kl(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, float]:
    """Mean KL(torch || exported) of each head's softmax over the images: a smooth measure of logit damage
    (argmax agreement moves in whole decisions; this ranks layers whose effect is smaller than one flip)."""
    vals = {}
    for n in names:
        a = ref[n] - ref[n].max(1, keepdims=True)
        b = got[n] - got[n].max(1, keepdims=True)
        la = a - np.log(np.exp(a).sum(1, keepdims=True))
        lb = b - np.log(np.exp(b).sum(1, keepdims=True))
        vals[n] = float((np.exp(la) * (la - lb)).sum(1).mean())
    return vals


def softmax_kl(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], names: Sequence[str]) -> float:
    """:func:`head_kl` averaged over the heads."""
    return float(np.mean(list(head_kl(ref, got, names).values())))


@dataclass
class Score:
    """How close an int8 candidate is to torch. The search's objective is the *worst* head (the parity gate judges
    every head on its own, so a mean could reach the target while one head stays below it)."""

    agreement: float                 # the worst discrete head's argmax agreement with torch (the objective)
    kl: float                        # the largest per-head softmax KL (tie-breaker: damage below one flip)
    pooled: float | None = None      # agreement pooled over all heads (reported only)
    worst_head: str | None = None    # which head is worst

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def score_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], outputs: dict[str, dict]) -> Score:
    """The :class:`Score` of exported outputs ``got`` against torch's ``ref`` (keyed by output name)."""
    from . import parity as P
    row = P.compare(P.ParityRow("tflite", "int8", "candidate"), ref, got, outputs)
    if row.status == P.FAILED:
        raise AvatarToolError(f"int8 candidate: {row.reason}")
    discrete = [n for n, info in outputs.items() if info["kind"] == "discrete"]
    kl = head_kl(ref, got, discrete)
    if row.worst_head_agreement is None:   # no discrete heads: nothing for the search to improve
        return Score(1.0, 0.0, None, None)
    return Score(row.worst_head_agreement, max(kl.values()), row.agreement, row.worst_head)


def rank_layers(quantize: Callable[[Sequence[str]], bytes], score: Callable[[bytes], Score], candidates: Sequence[str],
                progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Each candidate layer (:func:`compute_layers`) kept in float alone and scored; the layer whose rounding
    does most damage (lowest KL left when it is float) first."""
    say = progress or (lambda msg: None)
    cands = list(candidates)
    ranking = []
    for i, layer in enumerate(cands):
        s = score(quantize([layer]))
        ranking.append({"layer": layer, "agreement": s.agreement, "kl": s.kl, "worst_head": s.worst_head,
                        "pooled": s.pooled})
        say(f"int8 layer sensitivity {i + 1}/{len(cands)}: worst-head kl {s.kl:.2e} agreement {s.agreement:.4f}")
    return sorted(ranking, key=lambda r: (r["kl"], -r["agreement"]))


def choose_float_layers(quantize: Callable[[Sequence[str]], bytes], score: Callable[[bytes], Score],
                        target: float, max_layers: int = 16, progress: Callable[[str], None] | None = None,
                        ranking: list[dict[str, Any]] | None = None,
                        candidates: Sequence[str] | None = None,
                        first_try: Sequence[str] = ()) -> dict[str, Any]:
    """The smallest set of layers to keep in float for the int8 model's *worst head* to reach ``target`` agreement.

    ``score`` returns a :class:`Score` whose ``agreement`` is the worst discrete head's (:func:`score_outputs`),
    so every step below targets the head the parity gate would fail on, not an average over heads.

    1. the plain int8 model is scored; if it reaches ``target`` nothing stays float;
    1b. ``first_try`` (the heads' output layers: small, and where rounding flips near-tie answers — measured on
       the alter smoke build, all six in float reached 0.9883 for +0.03 MB) is tried as one set before any scan;
    2. otherwise each candidate layer (:func:`compute_layers`) is kept in float *alone* and the model scored:
       the layers are ranked by the KL they leave (lowest first = the layer whose rounding hurts most);
    3. the k best-ranked layers are kept in float for k = 1, 2, 4, … up to ``max_layers``; the first k that
       reaches ``target`` wins, else the best set measured — ``first_try`` included — by (agreement, then lowest
       KL, then fewer float layers), if it beats plain int8; the record says the target was missed.
       ``first_try`` must stay a contender: on the alter 224 px build it scored 0.9875 against 0.975 for the
       best scanned set, whose 8 float convolutions about doubled the inference time (README, sdk_latency).

    Args:
        quantize: float layer names -> int8 model bytes (:meth:`Int8Quantizer.quantize`).
        score: model bytes -> :class:`Score` on images that were not used for calibration.
        ranking: a :func:`rank_layers` result to reuse (skips step 2).
        candidates: the layers step 2 may keep float (:func:`compute_layers` of the quantizer's layer errors).
    Returns:
        a JSON-able record: ``float_layers``, ``reached``, ``base``, ``ranking``, ``steps``, ``model`` (bytes).
    """
    say = progress or (lambda msg: None)
    base_model = quantize([])
    base = score(base_model)
    rec: dict[str, Any] = {"target": target, "objective": "worst discrete head's argmax agreement",
                           "base": base.to_json(), "ranking": [], "steps": []}
    if base.agreement >= target:
        return {**rec, "float_layers": [], "reached": True, "model": base_model, "agreement": base.agreement,
                "why": f"plain int8's worst head ({base.worst_head}) reaches {base.agreement:.4f} >= {target:.4f} "
                       "on the selection images"}
    plain = f"plain int8's worst head {base.worst_head} {base.agreement:.4f} < {target:.4f} on the selection images"
    best: tuple[tuple[float, float, int], str, list[str], bytes] | None = None
    if first_try:
        model = quantize(list(first_try))
        s = score(model)
        rec["steps"].append({"first_try": list(first_try), **s.to_json()})
        say(f"int8 with the {len(first_try)} output layer(s) in float: worst head {s.worst_head} {s.agreement:.4f}")
        if s.agreement >= target:
            return {**rec, "float_layers": list(first_try), "reached": True, "model": model, "agreement": s.agreement,
                    "why": f"{plain}; keeping the {len(first_try)} output (logit) layer(s) in float gives worst head "
                           f"{s.worst_head} {s.agreement:.4f}"}
        best = ((s.agreement, -s.kl, -len(first_try)), f"the {len(first_try)} output (logit) layer(s)",
                list(first_try), model)
    if ranking is None:
        if candidates is None:
            raise ValueError("choose_float_layers needs candidates (compute_layers) or a ranking")
        ranking = rank_layers(quantize, score, candidates, say)
    rec["ranking"] = ranking
    for k in _sizes(min(max_layers, len(ranking))):
        layers = [r["layer"] for r in ranking[:k]]
        model = quantize(layers)
        s = score(model)
        rec["steps"].append({"k": k, **s.to_json()})
        say(f"int8 with the {k} most sensitive layer(s) in float: worst head {s.worst_head} {s.agreement:.4f}")
        if best is None or (s.agreement, -s.kl, -k) > best[0]:
            best = ((s.agreement, -s.kl, -k), f"the {k} most sensitive", layers, model)
        if s.agreement >= target:
            return {**rec, "float_layers": layers, "reached": True, "model": model, "agreement": s.agreement,
                    "why": f"{plain}; keeping the {k} layer(s) whose rounding costs most (measured one at a time) in "
                           f"float gives worst head {s.worst_head} {s.agreement:.4f}"}
    if best is None or best[0][:2] <= (base.agreement, -base.kl):
        return {**rec, "float_layers": [], "reached": False, "model": base_model, "agreement": base.agreement,
                "why": f"no float layer set up to {max_layers} layers beats plain int8 (worst head "
                       f"{base.agreement:.4f} < {target:.4f})"}
    return {**rec, "float_layers": best[2], "reached": False, "model": best[3], "agreement": best[0][0],
            "why": f"worst-head target {target:.4f} not reached with up to {max_layers} float layers; best "
                   f"{best[0][0]:.4f} (plain {base.agreement:.4f}) with {best[1]} in float"}


def _sizes(limit: int) -> list[int]:
    """1, 2, 4, … below ``limit``, then ``limit`` itself."""
    out, k = [], 1
    while k < limit:
        out.append(k)
        k *= 2
    return out + ([limit] if limit >= 1 else [])


def tflite_scorer(x_nchw: np.ndarray, ref: dict[str, np.ndarray], outputs: dict[str, dict], work_dir: str | Path,
                  batch: int = 50, onnx_outputs: Sequence[str] | None = None) -> Callable[[bytes], Score]:
    """A :class:`Score` function (:func:`score_outputs`) for int8 candidates against torch outputs ``ref`` on
    ``x_nchw``. ``onnx_outputs``: the converted ONNX file's output names in its order (default: ``outputs``'
    order), which a candidate's outputs are mapped by where its signature does not name them."""
    from . import parity as P
    from .tflite_export import TFLiteRunner, interpreter_output_map, make_interpreter, nchw_to_nhwc
    names = list(onnx_outputs if onnx_outputs is not None else outputs)
    path = Path(work_dir) / "int8_candidate.tflite"

    def score(model: bytes) -> Score:
        path.write_bytes(model)
        runner = TFLiteRunner(path, interpreter_output_map(make_interpreter(path), names))
        return score_outputs(ref, P.run_batched(lambda b: runner(nchw_to_nhwc(b)), x_nchw, batch), outputs)

    return score
