"""Open what ``bundle_path`` points at and describe it uniformly for the estimator.

Accepted:
* a ``.swiftavatar`` bundle, read by :mod:`sdk_python.bundle` (the bundle format's own reader);
* an exported ``estimator.onnx`` (metadata in its ``swiftavatar`` metadata_props, as
  ``converters/onnx_export.py`` writes it), or the export folder holding it: sibling files named as
  the exporter names them (``estimator_int8.tflite``, ``estimator_fp16.tflite``, ``estimator.pt``…)
  become the other backends' models.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .backends.base import ModelFiles
from .errors import BundleError, BundleVersionError

SUPPORTED_METADATA_VERSION = 1   # converters/metadata.py METADATA_VERSION this SDK understands
SUPPORTED_BUNDLE_MAJOR = 1

_SIBLINGS = {  # exporter file name -> model key (see backends.base.MODEL_KEYS)
    "estimator.onnx": "onnx",
    "estimator_fp32.tflite": "tflite_fp32",
    "estimator_fp16.tflite": "tflite_fp16",
    "estimator_int8.tflite": "tflite_int8",
    "estimator_fp16.mlpackage.zip": "coreml_fp16",
    "estimator_fp16.mlpackage": "coreml_fp16",
    "estimator_int8.mlpackage": "coreml",
    "estimator.pt": "torch",
}
_DETECTOR_NAMES = ("face_detector.tflite", "face_detection_short_range.tflite")


@dataclass
class ModelSource:
    """Everything the estimator needs from a bundle.

    Attributes:
        metadata: The exporter's metadata dict (``schema``, ``input``, ``outputs``, ``created_by``…).
        files: Estimator model files by key.
        output_order: ONNX output names in ONNX order (positional TFLite outputs follow it).
        detector_model: The bundle's face-detector model, if it has one.
        origin: What was opened (for messages).
    """

    metadata: dict
    files: ModelFiles
    output_order: list[str]
    detector_model: Optional[Path] = None
    origin: str = ""
    keep_alive: Any = field(default=None, repr=False)   # e.g. the bundle reader's temp folder

    @property
    def input_size(self) -> int:
        return int(self.metadata["input"]["size"])

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.metadata["input"]["normalization"]["mean"])

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.metadata["input"]["normalization"]["std"])

    def head_of(self, output_name: str) -> str:
        """Output name (``continuous`` / ``logits_<param>``) -> head name (``continuous`` / ``<param>``)."""
        info = self.metadata["outputs"][output_name]
        return "continuous" if info["kind"] == "continuous" else info["parameter"]


def check_metadata(meta: dict, origin: str) -> dict:
    """Refuse metadata this SDK cannot interpret; return it unchanged otherwise."""
    try:
        version = int(meta.get("metadata_version", 0))
    except (TypeError, ValueError):
        raise BundleError(f"{origin}: metadata_version {meta.get('metadata_version')!r} is not a number") from None
    if version != SUPPORTED_METADATA_VERSION:
        newer = version > SUPPORTED_METADATA_VERSION
        raise BundleVersionError(
            f"{origin} was exported with model metadata version {version} ({meta.get('created_by', 'unknown exporter')}); "
            f"this SDK reads version {SUPPORTED_METADATA_VERSION}: "
            + ("upgrade the SDK (pip install -U swiftavatar[sdk])" if newer else "re-export the model with a current avatartool"))
    missing = [k for k in ("schema", "input", "outputs") if k not in meta]
    if missing:
        raise BundleError(f"{origin}: model metadata lacks {missing}; re-export it with `avatartool export`")
    return meta


def _onnx_metadata(path: Path) -> tuple[dict, list[str]]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BundleError(f"{path}: reading a plain .onnx needs onnxruntime (`pip install onnxruntime`), "
                          "or use a .swiftavatar bundle") from None
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(f"{path} is not a loadable ONNX model ({exc}); re-export it") from None
    props = sess.get_modelmeta().custom_metadata_map
    if "swiftavatar" not in props:
        raise BundleError(f"{path} has no swiftavatar metadata: export it with `avatartool export` "
                          "(converters/onnx_export.py), not a bare torch.onnx.export")
    try:
        meta = json.loads(props["swiftavatar"])
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: its swiftavatar metadata is not JSON ({exc})") from None
    return meta, [o.name for o in sess.get_outputs()]


def open_model_source(path: Union[str, Path]) -> ModelSource:
    """Open a bundle, an exported ONNX file or an export folder.

    Raises:
        BundleError: missing, unreadable or inconsistent.
        BundleVersionError: written for another SDK / metadata version.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle or model file")
    if path.is_dir():
        onnx_file = path / "estimator.onnx"
        if not onnx_file.is_file():
            raise BundleError(f"{path}: a folder needs estimator.onnx (an export folder)")
        path = onnx_file
    if path.suffix == ".swiftavatar" or path.suffix == ".zip":
        return _from_bundle(path)
    if path.suffix != ".onnx":
        raise BundleError(f"{path}: expected a .swiftavatar bundle, an estimator.onnx or an export folder")
    meta, order = _onnx_metadata(path)
    check_metadata(meta, str(path))
    files = ModelFiles({"onnx": path})
    for name, key in _SIBLINGS.items():
        sib = path.parent / name
        if sib.exists() and key not in files.paths:
            files.paths[key] = sib
    files.parity = _folder_parity(path.parent)
    detector = next((path.parent / n for n in _DETECTOR_NAMES if (path.parent / n).is_file()), None)
    _check_outputs(meta, order, str(path))
    return ModelSource(metadata=meta, files=files, output_order=order, detector_model=detector, origin=str(path))


def _folder_parity(folder: Path) -> dict[str, dict]:
    """Parity rows by model key from an export folder's ``parity.json`` (none: every model unvalidated)."""
    try:
        rows = json.loads((folder / "parity.json").read_text()).get("rows", [])
    except (OSError, ValueError, AttributeError):
        return {}
    out = {}
    for r in rows if isinstance(rows, list) else []:
        key = _FORMAT_KEYS.get((r.get("format"), r.get("precision"))) if isinstance(r, dict) else None
        if key is not None:
            out[key] = r
    return out


def _check_outputs(meta: dict, order: list[str], origin: str) -> None:
    unknown = [n for n in order if n not in meta["outputs"]]
    if unknown:
        raise BundleError(f"{origin}: outputs {unknown} are not described in its metadata; re-export it")


_FORMAT_KEYS = {("onnx", "fp32"): "onnx", ("tflite", "fp32"): "tflite_fp32", ("tflite", "fp16"): "tflite_fp16",
                ("tflite", "int8"): "tflite_int8", ("coreml", "fp16"): "coreml_fp16", ("coreml", "int8"): "coreml"}


def _from_bundle(path: Path) -> ModelSource:
    """Adapter over the bundle format's reader (:mod:`sdk_python.bundle`): verify, extract the models
    to a private temporary folder (runtimes want files), describe them."""
    import tempfile
    import zipfile

    from . import bundle as reader
    # Version first, with the SDK's own error type (the reader refuses unknown majors too).
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read(reader.MANIFEST).decode("utf-8"))
        version = str(manifest.get("format_version", ""))
        major = int(version.split(".")[0])
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not a readable .swiftavatar bundle ({exc}): re-download or re-export it") from None
    if major != reader.SUPPORTED_MAJOR:
        raise BundleVersionError(
            f"{path} is bundle format {version}; this SDK reads {reader.SUPPORTED_MAJOR}.x: "
            + ("upgrade the SDK (pip install -U swiftavatar[sdk])" if major > reader.SUPPORTED_MAJOR
               else "re-export the model with a current avatartool"))
    tmp = tempfile.TemporaryDirectory(prefix="swiftavatar-bundle-")
    try:
        with reader.open_bundle(path) as b:
            b.verify()
            m = b.manifest
            meta = {"metadata_version": SUPPORTED_METADATA_VERSION, "created_by": m.get("created_by"),
                    "engine": m["engine"], "schema": m["schema"], "input": m["input"], "outputs": m["outputs"]}
            files = ModelFiles()
            for entry in m["models"]:
                key = _FORMAT_KEYS.get((entry.get("format"), entry.get("precision")))
                if key is None or key in files.paths:
                    continue
                dst = Path(tmp.name) / entry["file"]
                dst.write_bytes(b.read(entry["file"]))
                files.paths[key] = dst
                files.parity[key] = entry.get("parity") if isinstance(entry.get("parity"), dict) else {}
            detector = None
            if m.get("face_detector"):
                detector = Path(tmp.name) / Path(m["face_detector"]["file"]).name
                detector.write_bytes(b.read(m["face_detector"]["file"]))
    except reader.BundleError as exc:
        tmp.cleanup()
        raise BundleError(f"{exc}") from None
    order = list(m["outputs"])
    return ModelSource(metadata=meta, files=files, output_order=order, detector_model=detector, origin=str(path),
                       keep_alive=tmp)
