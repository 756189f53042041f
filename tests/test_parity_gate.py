"""The parity gate: a model below its threshold stays out of the bundle unless kept, the SDK's ``auto``
precision never picks it (an explicit request gets it, with a warning), export refuses without an
evaluation set unless ``no_parity``, and a ``no_parity`` bundle says "unvalidated" wherever it is shown."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ._ci import import_or_skip_unless_ci

from converters import parity as P
from converters.export import ExportOptions, export_model
from converters.formats import parse_targets
from sdk_python import AvatarEstimator, BackendUnavailableError, ParityWarning
from sdk_python.backends.base import ModelFiles
from sdk_python.bundle import open_bundle
from toolchain.engines.registry import create_engine
from ._sdk_fixtures import noise_image_folder
from toolchain.errors import AvatarToolError
from toolchain.estimator.model import AvatarEstimator as TorchEstimator, EstimatorConfig

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "toolchain.cli.main"]
NEVER = {"fp32": 1.01, "fp16": 0.995, "dynamic_int8": 0.98, "int8": 0.98}   # fp32 can never reach 101 %


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = TorchEstimator(EstimatorConfig(input_size=32, head_hidden=16,
                                           schema=create_engine("morph").schema.to_json())).eval()
    path = tmp_path_factory.mktemp("model") / "estimator.pt"
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return noise_image_folder(tmp_path_factory.mktemp("imgs"), 8)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "face_detection_short_range.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))   # passes the exporter's TFLite check; never run here
    return path


def _export(model_path, out, **kw):
    return export_model(model_path, out, ExportOptions(**{"targets": parse_targets("onnx"), **kw}))


# ----- export -------------------------------------------------------------------------------------------------
def test_export_without_eval_set_refuses_unless_no_parity(model_path, tmp_path, detector):
    with pytest.raises(AvatarToolError, match="no evaluation set.*--no-parity"):
        _export(model_path, tmp_path / "a", face_detector=detector)
    assert not (tmp_path / "a" / "morph.swiftavatar").exists()
    report = _export(model_path, tmp_path / "b", face_detector=detector, no_parity=True)
    assert [r["status"] for r in report["rows"]] == [P.UNVALIDATED] and report["rows"][0]["agreement"] is None
    with open_bundle(report["bundle"]) as b:
        assert [m["parity"]["status"] for m in b.manifest["models"]] == [P.UNVALIDATED]


def test_below_threshold_model_is_left_out_by_default(model_path, images, tmp_path, detector):
    report = _export(model_path, tmp_path, eval_set=images, face_detector=detector, thresholds=NEVER)
    row = report["rows"][0]
    assert row["status"] == P.BELOW and row["bundled"] is False and not report["passed"]
    assert "bundle" not in report and not (tmp_path / "morph.swiftavatar").exists()   # nothing else passed
    assert any("left out of the bundle" in w and "--keep-failed" in w for w in report["warnings"])
    assert "left out of the bundle" in (tmp_path / "parity.md").read_text()


def test_left_out_model_is_absent_while_others_are_bundled(model_path, images, tmp_path, detector):
    import_or_skip_unless_ci("coremltools")
    report = _export(model_path, tmp_path, targets=parse_targets("onnx,coreml:fp16"), eval_set=images,
                     face_detector=detector, thresholds=NEVER)
    rows = {r["format"]: r for r in report["rows"]}
    assert rows["onnx"]["bundled"] is False and rows["coreml"]["status"] == P.NOT_RUN and rows["coreml"]["bundled"]
    with open_bundle(report["bundle"]) as b:
        b.verify()
        assert [(m["format"], m["parity"]["status"]) for m in b.manifest["models"]] == [("coreml", P.NOT_RUN)]
        assert "estimator.onnx" not in b.names
        assert {r["format"]: r["bundled"] for r in b.manifest["parity"]} == {"onnx": False, "coreml": True}


@pytest.fixture(scope="module")
def kept(model_path, images, tmp_path_factory, detector):
    out = tmp_path_factory.mktemp("kept")
    return _export(model_path, out, eval_set=images, face_detector=detector, thresholds=NEVER, keep_failed=True)


def test_keep_failed_bundles_it_marked(kept):
    assert kept["rows"][0]["bundled"] is True and not kept["passed"]
    assert any("KEPT in the bundle" in w for w in kept["warnings"])
    with open_bundle(kept["bundle"]) as b:
        b.verify()
        entry = b.model("onnx", "fp32")
        assert entry["parity"]["status"] == P.BELOW and entry["parity"]["agreement"] == 1.0


# ----- SDK ----------------------------------------------------------------------------------------------------
def test_auto_never_runs_a_kept_below_threshold_model(kept):
    for backend in ("auto", "onnxruntime"):
        with pytest.raises(BackendUnavailableError) as info:
            AvatarEstimator.create_from_bundle(kept["bundle"], backend=backend, detection="none")
        if backend == "onnxruntime":
            assert "onnx (below threshold)" in str(info.value) and "explicitly" in str(info.value)


def test_explicit_precision_runs_it_with_a_warning(kept):
    with pytest.warns(ParityWarning, match=r"below its parity threshold \(\d+ of \d+ discrete heads below 1.01 "
                                           r"agreement \(\w+ 1.0000"):
        est = AvatarEstimator.create_from_bundle(kept["bundle"], backend="onnxruntime", precision="fp32",
                                                 detection="none")
    with est:
        assert est.backend.parity_status == P.BELOW
        img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        assert est.estimate(img, color_order="rgb").vector is not None


def test_auto_picks_the_fastest_validated_model():
    files = ModelFiles({"tflite_int8": Path("i8"), "tflite_fp16": Path("f16"), "tflite_fp32": Path("f32")},
                       {"tflite_int8": {"status": P.BELOW, "agreement": 0.9794, "threshold": 0.98},
                        "tflite_fp16": {"status": P.VALIDATED}, "tflite_fp32": {"status": P.VALIDATED}})
    c = files.choose("litert")
    assert (c.precision, c.status, c.warning) == ("fp16", P.VALIDATED, None)
    files.parity["tflite_int8"]["status"] = P.VALIDATED
    assert files.choose("litert").precision == "int8"           # once int8 passes, it is the fastest
    files.parity["tflite_int8"]["status"] = P.BELOW
    c = files.choose("litert", "int8")                          # explicit: gets it, warned with the figure
    assert c.path == Path("i8") and "0.9794 < threshold 0.98" in c.warning
    # nothing validated: the least quantised model that is not below, with a warning; never the below one
    files.parity = {"tflite_int8": {"status": P.BELOW}, "tflite_fp16": {"status": P.UNVALIDATED}}
    files.models.pop("tflite_fp32")
    c = files.choose("litert")
    assert c.precision == "fp16" and "falls back to fp16" in c.warning and "'unvalidated'" in c.warning
    files.models.pop("tflite_fp16")
    assert files.choose("litert") is None and files.choose("litert", "int8").path == Path("i8")
    # a bundle written before the gate: "exported" reads as "not run here"; no parity at all reads as unvalidated
    old = ModelFiles({"coreml_fp16": Path("c")}, {"coreml_fp16": {"status": "exported"}})
    assert old.status("coreml_fp16") == P.NOT_RUN and ModelFiles({"onnx": Path("o")}).status("onnx") == P.UNVALIDATED


# ----- a no-parity bundle says "unvalidated" everywhere it is shown ---------------------------------------------
def test_no_parity_cli_export_inspect_and_sdk(model_path, tmp_path, detector):
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    base = [*CLI, "export", "--model", str(model_path), "--formats", "onnx", "--face-detector", str(detector),
            "--out", str(tmp_path)]
    refused = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, env=env)
    assert refused.returncode == 1 and "--no-parity" in refused.stderr, refused.stderr
    done = subprocess.run([*base, "--no-parity"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert "unvalidated" in done.stdout and "--no-parity" in done.stderr
    assert json.loads((tmp_path / "parity.json").read_text())["rows"][0]["status"] == P.UNVALIDATED
    shown = subprocess.run([*CLI, "bundle", "inspect", str(tmp_path / "morph.swiftavatar")], capture_output=True,
                           text=True, cwd=ROOT, env=env)
    assert shown.returncode == 0 and "unvalidated" in shown.stdout, shown.stderr
    with pytest.warns(ParityWarning, match="no validated onnxruntime model.*falls back to fp32.*'unvalidated'"):
        est = AvatarEstimator.create_from_bundle(tmp_path / "morph.swiftavatar", detection="none")
    with est:
        assert est.backend.parity_status == P.UNVALIDATED


def test_a_validated_model_runs_without_a_parity_warning(model_path, images, tmp_path, detector):
    report = _export(model_path, tmp_path, eval_set=images, face_detector=detector)
    assert report["passed"] and report["rows"][0]["bundled"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityWarning)
        with AvatarEstimator.create_from_bundle(report["bundle"], detection="none") as est:
            assert est.backend.parity_status == P.VALIDATED and est.backend.precision == "fp32"
