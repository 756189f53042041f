"""Open what ``bundle_path`` points at and describe it uniformly for the estimator.

Accepted:
* a ``.swiftavatar`` bundle, read by :mod:`sdk_python.bundle` (the bundle format's own reader);
* an exported ``estimator.onnx`` (metadata in its ``swiftavatar`` metadata_props, as
  ``converters/onnx_export.py`` writes it), or the export folder holding it: sibling files named by the
  model contract's rows (:mod:`sdk_python.contract`) become the other backends' models, with the parity
  rows and export records of the folder's ``parity.json``.

A bundle is opened lazily: its manifest is checked, and a model's bytes are read (by offset, sha256-checked)
only when a backend loads it, so creating an estimator touches one model, not all of them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from . import contract
from .backends.base import ModelFile, ModelFiles
from .errors import BundleError, BundleVersionError

SUPPORTED_METADATA_VERSION = contract.METADATA_VERSION


@dataclass
class ModelSource:
    """Everything the estimator needs from a bundle.

    Attributes:
        metadata: The exporter's metadata dict (``schema``, ``input``, ``outputs``, ``created_by``…).
        files: Estimator model files by key.
        output_order: Output names in the manifest's (ONNX) order.
        detector_model: The bundle's face-detector model, if it has one.
        origin: What was opened (for messages).
        temperatures: The exporter's confidence calibration (discrete parameter → temperature); empty if none.
        full_range_detector: The bundle's full-range face-detector model, if it has one.
        face_mesh: The bundle's face-mesh model (the presence check of the face checks), if it has one.
    """

    metadata: dict
    files: ModelFiles
    output_order: list[str]
    detector_model: Optional[Path] = None
    origin: str = ""
    temperatures: dict = field(default_factory=dict)
    full_range_detector: Optional[Path] = None
    face_mesh: Optional[Path] = None
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
        BundleError: missing, unreadable or inconsistent (subclasses say which: damaged bytes, a malformed
            manifest field).
        BundleVersionError: written for another SDK / metadata version.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle or model file")
    onnx_row = contract.row("onnx", "fp32")
    if path.is_dir():
        onnx_file = path / onnx_row.file
        if not onnx_file.is_file():
            raise BundleError(f"{path}: a folder needs {onnx_row.file} (an export folder)")
        path = onnx_file
    if path.suffix in (".swiftavatar", ".zip"):
        return _from_bundle(path)
    if path.name != onnx_row.file and path.suffix != ".onnx":
        raise BundleError(f"{path}: expected a .swiftavatar bundle, an {onnx_row.file} or an export folder")
    meta, order = _onnx_metadata(path)
    check_metadata(meta, str(path))
    rows, records, temperatures = _folder_parity(path.parent)
    files = ModelFiles()
    files.add(ModelFile(onnx_row.key, path=path, record=records.get(onnx_row.key, {})), rows.get(onnx_row.key))
    for r in contract.rows():
        for name in dict.fromkeys((r.file, r.member)):
            sib = path.parent / name
            if r.key not in files.models and sib.exists():
                files.add(ModelFile(r.key, path=sib, record=records.get(r.key, {})), rows.get(r.key))
    short, full, mesh = (path.parent / contract.detector(k).file for k in ("short", "full", "mesh"))
    _check_outputs(meta, order, str(path))
    return ModelSource(metadata=meta, files=files, output_order=order, detector_model=short if short.is_file() else None,
                       origin=str(path), temperatures=temperatures, full_range_detector=full if full.is_file() else None,
                       face_mesh=mesh if mesh.is_file() else None)


def _temperatures(cal: Any) -> dict:
    temps = cal.get("temperatures") if isinstance(cal, dict) else None
    return {str(k): float(v) for k, v in temps.items()} if isinstance(temps, dict) else {}


def _folder_parity(folder: Path) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """Parity rows and export records by model key, and the confidence temperatures, from an export folder's
    ``parity.json`` (none: every model unvalidated, no records, raw softmax)."""
    try:
        report = json.loads((folder / "parity.json").read_text())
    except (OSError, ValueError):
        return {}, {}, {}
    if not isinstance(report, dict):
        return {}, {}, {}
    rows: dict[str, dict] = {}
    for r in report.get("rows") if isinstance(report.get("rows"), list) else []:
        row = contract.find_row(r.get("format"), r.get("precision")) if isinstance(r, dict) else None
        if row is not None:
            rows[row.key] = r
    records: dict[str, dict] = {}
    raw = report.get("records") if isinstance(report.get("records"), dict) else {}
    for name, rec in raw.items():
        fmt, _, prec = str(name).partition(":")
        row = contract.find_row(fmt, prec)
        if row is not None and isinstance(rec, dict):
            records[row.key] = rec
    return rows, records, _temperatures(report.get("confidence_calibration"))


def _check_outputs(meta: dict, order: list[str], origin: str) -> None:
    unknown = [n for n in order if n not in meta["outputs"]]
    if unknown:
        raise BundleError(f"{origin}: outputs {unknown} are not described in its metadata; re-export it")


def _from_bundle(path: Path) -> ModelSource:
    """Adapter over the bundle format's reader (:mod:`sdk_python.bundle`): check the envelope and manifest,
    describe the models as members to be read on demand, extract only the small face-detector file."""
    import tempfile

    from . import bundle as reader
    with reader.open_bundle(path) as b:
        m = b.manifest
        meta = {"metadata_version": SUPPORTED_METADATA_VERSION, "created_by": m.get("created_by"),
                "engine": m["engine"], "schema": m["schema"], "input": m["input"], "outputs": m["outputs"]}
        files = ModelFiles()
        for entry in m["models"]:
            row = contract.find_row(entry["format"], entry["precision"])
            if row is None or row.key in files.models:
                continue  # a format this SDK cannot run (newer exporter): the others still work
            record = {k: v for k, v in entry.items() if k not in ("format", "precision", "file", "parity")}
            files.add(ModelFile(row.key, member=b.member(entry["file"]), record=record), entry.get("parity"))
        # The detectors are small; MediaPipe wants files. Bundles written before full-range detectors name the
        # short-range one in 'face_detector' only.
        wanted = {**({"short": m["face_detector"]} if m.get("face_detector") else {}), **(m.get("face_detectors") or {})}
        keep = tempfile.TemporaryDirectory(prefix="swiftavatar-detector-") if wanted else None
        found = {kind: reader.extract_member(b.member(d["file"]), keep.name) for kind, d in wanted.items()}
    return ModelSource(metadata=meta, files=files, output_order=list(m["outputs"]), detector_model=found.get("short"),
                       origin=str(path), keep_alive=keep, temperatures=_temperatures(m.get("confidence_calibration")),
                       full_range_detector=found.get("full"), face_mesh=found.get("mesh"))
