"""TFLite export through onnx2tf (run as a subprocess, network blocked), output mapping by name, metadata.

What onnx2tf does to the model, and how this module handles it:

* the input becomes **NHWC** (``[B, S, S, 3]``, still normalised float): callers transpose explicitly
  (:func:`nchw_to_nhwc`); the bundle manifest records the layout per file;
* fp32 / fp16 / dynamic-range files have no signature and name their outputs ``Identity``,
  ``Identity_1``…, ``Identity_k`` being ONNX output ``k``; int8 files list their outputs in another
  order (``PartitionedCall:4``, ``:1``…) but carry a ``serving_default`` signature whose ``output_k``
  is ONNX output ``k``. :func:`tflite_output_map` turns either form into *ONNX output name → where to
  read it*; nothing here reads outputs by position;
* onnx2tf converts a copy of the ONNX file, simplified once, and makes only the TFLite files asked for
  (:mod:`converters._onnx2tf_main`);
* int8 calibration uses our images, passed with ``-cind input calib.npy MEAN STD`` as NHWC floats in
  [0, 1]: onnx2tf applies ``(x - MEAN) / STD`` itself, so calibration sees exactly what inference sees.
  The ONNX model has a dynamic batch, so onnx2tf never wants its downloadable sample images, and the
  subprocess has its sockets blocked (:mod:`converters._onnx2tf_main`) in case it tries anyway.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sdk_python import contract
from sdk_python.backends.litert_backend import METADATA_NAME
from toolchain.errors import AvatarToolError

from .metadata import metadata_json

# our precision name -> onnx2tf's file suffix
ONNX2TF_FILES = {"fp32": "float32", "fp16": "float16", "dynamic_int8": "dynamic_range_quant", "int8": "integer_quant"}
SIGNATURE = "serving_default"
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def _venv_bin() -> str:
    return str(Path(sys.executable).parent)


def run_onnx2tf(onnx_path: str | Path, out_dir: str | Path, precisions: Sequence[str], mean: Sequence[float],
                std: Sequence[float], calibration: np.ndarray | None = None, timeout: float = 3600,
                log_path: str | Path | None = None, saved_model_to: str | Path | None = None,
                quant_type: str = "per-channel") -> dict[str, Path]:
    """Convert ``onnx_path`` with onnx2tf; return {precision: produced .tflite in ``out_dir``}.

    Args:
        calibration: float32 NHWC images in [0, 1] (required when ``"int8"`` is asked for).
        saved_model_to: also keep onnx2tf's TensorFlow saved model (with its ``serving_default`` signature)
            in this folder: :mod:`converters.int8_quant` quantizes from it with layers kept in float.
        quant_type: ``per-channel`` or ``per-tensor`` int8 weight scales.
    Raises:
        AvatarToolError: onnx2tf failed (the log tail is in the message) or a file is missing.
    """
    onnx_path, out_dir = Path(onnx_path).resolve(), Path(out_dir).resolve()
    bad = [p for p in precisions if p not in ONNX2TF_FILES]
    if bad:
        raise AvatarToolError(f"TFLite precisions {bad} are not supported (choose from {', '.join(ONNX2TF_FILES)})")
    with tempfile.TemporaryDirectory(prefix="swiftavatar-onnx2tf-") as work:
        work = Path(work)
        if quant_type not in ("per-channel", "per-tensor"):
            raise AvatarToolError(f"quant_type {quant_type!r}: choose per-channel or per-tensor")
        # onnx2tf's input is a copy: its simplification writes to the file it is given, and the exported ONNX
        # (the parity-checked file that goes into the bundle) must stay as it was checked
        model_copy = work / onnx_path.name
        shutil.copyfile(onnx_path, model_copy)
        args = ["-i", str(model_copy), "-o", str(work / "tf"), "-qt", quant_type]
        if saved_model_to is not None:
            args += ["-osd"]
        if "int8" in precisions:
            if calibration is None:
                raise AvatarToolError("TFLite int8 needs calibration images (--int8-calibration DATASET)")
            calib = np.ascontiguousarray(calibration, np.float32)
            if calib.ndim != 4 or calib.shape[-1] != 3 or calib.min() < 0 or calib.max() > 1:
                raise AvatarToolError(f"calibration data must be NHWC float in [0, 1], got {calib.shape}")
            np.save(work / "calib.npy", calib)
            fmt = lambda v: json.dumps([[[[float(a) for a in v]]]])  # noqa: E731 - [1,1,1,3] broadcast over NHWC
            args += ["-oiqt", "-cind", "input", str(work / "calib.npy"), fmt(mean), fmt(std)]
        elif "dynamic_int8" in precisions:
            args += ["-odrqt"]
        env = dict(os.environ)
        # onnx2tf runs its helper tools as commands (onnxsim, when not told -nuo): the venv's bin/ on PATH first
        env["PATH"] = _venv_bin() + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["NO_COLOR"] = "1"
        proc = subprocess.run([sys.executable, "-m", "converters._onnx2tf_main", "--keep", ",".join(precisions), "--",
                               *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout)
        log = proc.stdout + "\n" + proc.stderr
        if log_path:
            Path(log_path).write_text(log)
        if (work / ONNX2TF_SAMPLE).exists():  # pragma: no cover - guarded by the blocked network
            raise AvatarToolError("onnx2tf fetched its own sample calibration data; refusing the result")
        if proc.returncode != 0:
            tail = "\n".join(log.strip().splitlines()[-15:])
            raise AvatarToolError(f"onnx2tf failed (exit {proc.returncode}):\n{tail}")
        produced = {}
        out_dir.mkdir(parents=True, exist_ok=True)
        for p in precisions:
            src = work / "tf" / f"{onnx_path.stem}_{ONNX2TF_FILES[p]}.tflite"
            if not src.is_file():
                tail = "\n".join(log.strip().splitlines()[-15:])
                raise AvatarToolError(f"onnx2tf did not write the {p} file {src.name}:\n{tail}")
            dst = out_dir / contract.row("tflite", p).file
            shutil.copyfile(src, dst)
            produced[p] = dst
        if saved_model_to is not None:
            dest = Path(saved_model_to)
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for name in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
                src = work / "tf" / name
                if src.is_dir():
                    shutil.copytree(src, dest / name)
                elif src.is_file():
                    shutil.copyfile(src, dest / name)
            if not (dest / "saved_model.pb").is_file():
                raise AvatarToolError("onnx2tf wrote no saved model (saved_model.pb) although -osd was given")
        return produced


# ----- output mapping ------------------------------------------------------------------------------
_IDENTITY = re.compile(r"^Identity(?:_(\d+))?$")
_SIG_OUT = re.compile(r"^output_(\d+)$")


def tflite_output_map(signatures: dict[str, Any], output_names: Sequence[str], onnx_outputs: Sequence[str]) -> dict[str, Any]:
    """Where each ONNX output lives in a TFLite file, decided by name, never by position.

    Args:
        signatures: ``interpreter.get_signature_list()``.
        output_names: the TFLite output tensor names (``get_output_details()`` names, any order).
        onnx_outputs: the ONNX output names in ONNX order.
    Returns:
        ``{"signature": "serving_default", "outputs": {onnx name: signature key}}`` or
        ``{"signature": None, "outputs": {onnx name: tensor name}}``.
    Raises:
        AvatarToolError: some output cannot be mapped by name.
    """
    onnx_outputs = list(onnx_outputs)
    mapping: dict[str, str] = {}
    if signatures.get(SIGNATURE):
        for key in signatures[SIGNATURE]["outputs"]:
            if key in onnx_outputs:
                mapping[key] = key
            elif (m := _SIG_OUT.match(key)) and int(m.group(1)) < len(onnx_outputs):
                mapping[onnx_outputs[int(m.group(1))]] = key
        where = SIGNATURE
    else:
        for name in output_names:
            if name in onnx_outputs:
                mapping[name] = name
            elif (m := _IDENTITY.match(name)) and int(m.group(1) or 0) < len(onnx_outputs):
                mapping[onnx_outputs[int(m.group(1) or 0)]] = name
        where = None
    missing = [n for n in onnx_outputs if n not in mapping]
    if missing or len(set(mapping.values())) != len(mapping):
        raise AvatarToolError(f"cannot map TFLite outputs to the ONNX outputs {missing or onnx_outputs} by name "
                              f"(TFLite outputs: {list(output_names)}, signatures: {list(signatures)})")
    return {"signature": where, "outputs": {n: mapping[n] for n in onnx_outputs}}


def make_interpreter(path: str | Path, threads: int = 2):
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_path=str(path), num_threads=threads)


def interpreter_output_map(interp, onnx_outputs: Sequence[str]) -> dict[str, Any]:
    return tflite_output_map(interp.get_signature_list(), [d["name"] for d in interp.get_output_details()], onnx_outputs)


class TFLiteRunner:
    """Runs a TFLite estimator on normalised NHWC float batches; returns outputs by ONNX output name."""

    def __init__(self, path: str | Path, output_map: dict[str, Any], threads: int = 2):
        self.interp = make_interpreter(path, threads)
        self.map = output_map
        if output_map["signature"]:
            self.runner = self.interp.get_signature_runner(output_map["signature"])
            self.input_key = self.interp.get_signature_list()[output_map["signature"]]["inputs"][0]
        else:
            self.interp.allocate_tensors()
            self.input = self.interp.get_input_details()[0]
            self.by_name = {d["name"]: d for d in self.interp.get_output_details()}
        self._batch = None

    def __call__(self, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x_nhwc, np.float32)
        if self.map["signature"]:
            out = self.runner(**{self.input_key: x})
            # copy: the runner's arrays alias interpreter memory that the next invoke() overwrites
            return {name: np.array(out[key], copy=True) for name, key in self.map["outputs"].items()}
        if self._batch != x.shape[0]:
            self.interp.resize_tensor_input(self.input["index"], list(x.shape))
            self.interp.allocate_tensors()
            self._batch = x.shape[0]
        self.interp.set_tensor(self.input["index"], x)
        self.interp.invoke()
        return {name: np.array(self.interp.get_tensor(self.by_name[t]["index"]), copy=True)
                for name, t in self.map["outputs"].items()}


# ----- metadata ------------------------------------------------------------------------------------
def embed_metadata(path: str | Path, metadata: dict[str, Any]) -> None:
    """Add ``metadata`` (JSON, incl. normalisation and output map) as the model's ``swiftavatar_metadata`` entry."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    path = Path(path)
    buf = bytearray(path.read_bytes())
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(buf, 0))
    data = fb.BufferT()
    data.data = np.frombuffer(metadata_json(metadata).encode("utf-8"), np.uint8)
    model.buffers.append(data)
    entry = fb.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(len(buf) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(builder.Output())
    os.replace(tmp, path)


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    from sdk_python.backends.litert_backend import embedded_metadata
    return embedded_metadata(Path(path).read_bytes())


def finish_tflite(path: str | Path, metadata: dict[str, Any], onnx_outputs: Sequence[str], precision: str,
                  float_layers: Sequence[str] = ()) -> dict[str, Any]:
    """Map outputs by name, embed the metadata (with that map, the layout and quantization); return the file's record.

    ``float_layers``: int8 layers (output tensor names) that were kept in float (:mod:`converters.int8_quant`).
    """
    interp = make_interpreter(path)
    omap = interpreter_output_map(interp, onnx_outputs)
    quant = {"fp32": None, "fp16": {"weights": "float16"},
             "dynamic_int8": {"weights": "int8", "activations": "float (quantised at run time)"},
             "int8": {"weights": "int8 per-channel", "activations": "int8", "io": "float32",
                      "calibration": "see manifest", "float_layers": list(float_layers)}}[precision]
    record = {"input_layout": "NHWC", "output_map": omap, "quantization": quant}
    embed_metadata(path, {**metadata, "format": "tflite", "precision": precision, **record})
    return record
