"""The model contract: the one place that says what an exported estimator and a bundle look like.

The exporter (``converters/``) writes by this table and the SDK reads by it; neither side keeps a copy.
Imports run one way — ``sdk_python`` ← ``toolchain`` ← ``converters`` ← CLI — so this module depends on
nothing but the standard library.

* **Input / outputs**: one input tensor named :data:`INPUT_NAME`; one output per head, named by
  :func:`output_name` (``continuous`` for all continuous parameters, ``logits_<parameter>`` per discrete one).
* **Model rows** (:data:`MODEL_ROWS`): format × precision → file name, model key, runtime, input layout.
  Look rows up with :func:`row`, :func:`row_for_key` and :func:`row_for_member`, at call time, so that a
  changed row changes both sides.
* **Bundle**: :data:`BUNDLE_FORMAT`, :data:`BUNDLE_FORMAT_VERSION`, :data:`ALIGNMENT`, :data:`MANIFEST`, and the
  optional engine record :data:`ENGINE_SPEC_FIELD` (how the build started its engine).
* **Parity**: the status words both sides use and the default thresholds.
* **Face detectors** (:data:`DETECTORS`): the MediaPipe files the SDK needs (the short- and full-range
  detectors and the face-mesh model that confirms faces), pinned by sha256, and the wheel they come from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# ----- tensors ----------------------------------------------------------------------------------------
INPUT_NAME = "input"
CONTINUOUS_HEAD = "continuous"
DISCRETE_PREFIX = "logits_"
METADATA_VERSION = 1


def output_name(head: str) -> str:
    """Head name (``continuous`` or a discrete parameter) → exported output name."""
    return CONTINUOUS_HEAD if head == CONTINUOUS_HEAD else DISCRETE_PREFIX + head


def head_name(output: str) -> str:
    """Exported output name → head name (inverse of :func:`output_name`)."""
    return CONTINUOUS_HEAD if output == CONTINUOUS_HEAD else output.removeprefix(DISCRETE_PREFIX)


# ----- precisions and model rows ----------------------------------------------------------------------
PRECISIONS = {
    "fp32": "32-bit float weights and activations",
    "fp16": "16-bit float weights (activations fp16 where the runtime allows)",
    "dynamic_int8": "8-bit weights, float activations quantised on the fly (no calibration)",
    "int8": "8-bit integer: TFLite full-integer (calibrated, float32 in/out); CoreML int8 weights",
}


@dataclass(frozen=True)
class ModelRow:
    """One exported model file.

    Attributes:
        format: ``onnx``, ``tflite``, ``coreml`` or ``torch`` (a ``torch.export`` program).
        precision: A key of :data:`PRECISIONS`.
        file: The file the exporter writes (a folder for CoreML ``.mlpackage``).
        key: The SDK's model key (one per row).
        runtime: The SDK backend that runs it.
        input_layout: ``NCHW`` / ``NHWC`` normalised floats, or ``image`` (RGB 0–255, normalised inside).
    """

    format: str
    precision: str
    file: str
    key: str
    runtime: str
    input_layout: str

    @property
    def is_folder(self) -> bool:
        return self.file.endswith(".mlpackage")

    @property
    def member(self) -> str:
        """The member name in a bundle (folders are stored zipped)."""
        return self.file + ".zip" if self.is_folder else self.file

    @property
    def name(self) -> str:
        return f"{self.format}:{self.precision}"


MODEL_ROWS: tuple[ModelRow, ...] = (
    ModelRow("onnx", "fp32", "estimator.onnx", "onnx", "onnxruntime", "NCHW"),
    ModelRow("tflite", "fp32", "estimator_fp32.tflite", "tflite_fp32", "litert", "NHWC"),
    ModelRow("tflite", "fp16", "estimator_fp16.tflite", "tflite_fp16", "litert", "NHWC"),
    ModelRow("tflite", "dynamic_int8", "estimator_dynamic_int8.tflite", "tflite_dynamic_int8", "litert", "NHWC"),
    ModelRow("tflite", "int8", "estimator_int8.tflite", "tflite_int8", "litert", "NHWC"),
    ModelRow("coreml", "fp16", "estimator_fp16.mlpackage", "coreml_fp16", "coreml", "image"),
    ModelRow("coreml", "int8", "estimator_int8.mlpackage", "coreml_int8", "coreml", "image"),
    ModelRow("torch", "fp32", "estimator.pt2", "torch", "torch", "NCHW"),
)


class ContractError(KeyError):
    """A format, precision, key or file that the model contract does not define."""

    def __str__(self) -> str:
        return str(self.args[0])


def rows() -> tuple[ModelRow, ...]:
    return MODEL_ROWS


def formats() -> list[str]:
    """Format names in table order."""
    return list(dict.fromkeys(r.format for r in MODEL_ROWS))


def precisions_of(fmt: str) -> tuple[str, ...]:
    return tuple(r.precision for r in MODEL_ROWS if r.format == fmt)


def row(fmt: str, precision: str) -> ModelRow:
    for r in MODEL_ROWS:
        if r.format == fmt and r.precision == precision:
            return r
    raise ContractError(f"no model row for {fmt}:{precision} (the contract has: "
                        f"{', '.join(r.name for r in MODEL_ROWS)})")


def find_row(fmt: object, precision: object) -> Optional[ModelRow]:
    """Like :func:`row`, ``None`` instead of an error (for values read from a file)."""
    return next((r for r in MODEL_ROWS if r.format == fmt and r.precision == precision), None)


def row_for_key(key: str) -> ModelRow:
    for r in MODEL_ROWS:
        if r.key == key:
            return r
    raise ContractError(f"unknown model key {key!r} (known: {', '.join(r.key for r in MODEL_ROWS)})")


def row_for_member(name: str) -> Optional[ModelRow]:
    """The row whose file (or bundle member) is ``name`` (a bare file name), if any."""
    return next((r for r in MODEL_ROWS if name in (r.file, r.member)), None)


def runtimes() -> list[str]:
    return list(dict.fromkeys(r.runtime for r in MODEL_ROWS))


# ----- parity -----------------------------------------------------------------------------------------
VALIDATED = "validated"          # ran here, within its thresholds
BELOW = "below threshold"        # ran here, outside a threshold: left out of the bundle unless --keep-failed
NOT_RUN = "not run here"         # its runtime cannot predict on the exporting machine (CoreML off macOS)
UNVALIDATED = "unvalidated"      # never compared (--no-parity)
FAILED = "failed"                # the export itself failed: never bundled
LEGACY_STATUS = {"exported": NOT_RUN}   # bundles written before the parity gate

# Argmax agreement with torch that *every* discrete head must reach on its own, over the evaluation images (the
# worst head decides: a mean over heads hides one bad head).
AGREEMENT_THRESHOLDS = {"fp32": 0.995, "fp16": 0.995, "dynamic_int8": 0.98, "int8": 0.98}
# Continuous outputs are each parameter's value as a fraction of its range ([0, 1]), so these are errors
# in units of the range: each parameter's mean over the images, and the worst single value.
CONTINUOUS_THRESHOLDS = {"fp32": {"mean": 0.002, "max": 0.02}, "fp16": {"mean": 0.005, "max": 0.05},
                         "dynamic_int8": {"mean": 0.02, "max": 0.15}, "int8": {"mean": 0.02, "max": 0.15}}

# `auto` precision: fastest first per runtime; only validated models qualify.
AUTO_PRECISION = {"onnxruntime": ("fp32",), "litert": ("int8", "dynamic_int8", "fp16", "fp32"),
                  "coreml": ("fp16", "int8"), "torch": ("fp32",)}
FALLBACK_ORDER = ("fp32", "fp16", "dynamic_int8", "int8")   # auto with nothing validated: least quantised

# ----- bundle -----------------------------------------------------------------------------------------
BUNDLE_FORMAT = "swiftavatar-bundle"
BUNDLE_FORMAT_VERSION = "1.1"
SUPPORTED_BUNDLE_MAJOR = 1
ALIGNMENT = 4
MANIFEST = "manifest.json"
SCHEMA_MEMBER = "schema.json"
# Optional manifest metadata: how the build started its engine, so `avatartool predict --render` can start it again
# (toolchain/engines/bundle_engine.py). The SDK never starts an engine; it only checks the field's shape.
ENGINE_SPEC_FIELD = "engine_spec"
ENGINE_SPEC_KINDS = ("built-in", "plug-in", "module", "cmd")


# ----- face detectors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorPin:
    """A MediaPipe face model: its file name, the wheel member it comes from, size and sha256."""

    mode: str
    file: str
    wheel_member: str
    size: int
    sha256: str

    @property
    def label(self) -> str:
        """What the model is, for messages: ``short-range face detector``, ``face-mesh model``."""
        return "face-mesh model" if self.mode == "mesh" else f"{self.mode}-range face detector"


DETECTOR_WHEEL = "mediapipe==0.10.21"
DETECTOR_LICENSE = "Apache-2.0"
DETECTORS: dict[str, DetectorPin] = {
    "short": DetectorPin("short", "face_detection_short_range.tflite",
                         "mediapipe/modules/face_detection/face_detection_short_range.tflite", 229_714,
                         "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    # faces farther from the camera (group photos): 192 px input, ~2-4x slower (sdk_python/face_finder.py)
    "full": DetectorPin("full", "face_detection_full_range_sparse.tflite",
                        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite", 676_746,
                        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    # not a detector: the face-mesh model, whose face-presence output confirms that a detection is a human
    # face (sdk_python/face_presence.py) and whose 468 landmarks align the crop and track the face in VIDEO
    # mode (sdk_python/face_mesh.py, face_tracker.py); 192 px input, ~1.2 ms on one thread
    "mesh": DetectorPin("mesh", "face_landmark.tflite", "mediapipe/modules/face_landmark/face_landmark.tflite",
                        1_242_398, "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
}


def detector(mode: str = "short") -> DetectorPin:
    try:
        return DETECTORS[mode]
    except KeyError:
        raise ContractError(f"unknown face-detector mode {mode!r} (known: {', '.join(DETECTORS)})") from None


def detector_for_file(name: str) -> Optional[DetectorPin]:
    return next((d for d in DETECTORS.values() if d.file == name), None)
