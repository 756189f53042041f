"""The model contract (sdk_python/contract.py) is the one source both sides read: change a row and the exporter
and the SDK follow; the SDK runs without the training code; every contract precision loads by name."""
from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from converters.export import ExportOptions, export_model
from converters.formats import parse_targets
from sdk_python import AvatarEstimator, contract
from sdk_python.backends.base import ModelFiles
from sdk_python.bundle import open_bundle
from sdk_python.model_source import open_model_source
from toolchain.engines.registry import create_engine
from toolchain.estimator.model import AvatarEstimator as TorchEstimator, EstimatorConfig

from ._sdk_fixtures import noise_image_folder

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = TorchEstimator(EstimatorConfig(input_size=SIZE, schema=create_engine("morph").schema.to_json())).eval()
    path = tmp_path_factory.mktemp("model") / "estimator.pt"
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return noise_image_folder(tmp_path_factory.mktemp("imgs"), 12)


def _fake_detector(path: Path) -> Path:
    path.write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
    return path


def _rename(fmt: str, precision: str, file: str) -> tuple[contract.ModelRow, ...]:
    return tuple(dataclasses.replace(r, file=file) if (r.format, r.precision) == (fmt, precision) else r
                 for r in contract.MODEL_ROWS)


def test_a_changed_contract_row_moves_exporter_and_sdk_together(model_path, images, tmp_path, monkeypatch):
    monkeypatch.setattr(contract, "MODEL_ROWS", _rename("onnx", "fp32", "net_float.onnx"))
    monkeypatch.setattr(contract, "MODEL_ROWS", _rename("torch", "fp32", "program.pt2"))
    out = tmp_path / "export"
    report = export_model(model_path, out, ExportOptions(targets=parse_targets("onnx,torch"), eval_set=images,
                                                         face_detector=_fake_detector(tmp_path / "d.tflite")))
    assert report["passed"], report["rows"]
    assert (out / "net_float.onnx").is_file() and (out / "program.pt2").is_file()
    assert not (out / "estimator.onnx").exists() and not (out / "estimator.pt2").exists()
    with open_bundle(report["bundle"]) as b:
        assert sorted(m["file"] for m in b.manifest["models"]) == ["net_float.onnx", "program.pt2"]
    img = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    vectors = {}
    for source in (report["bundle"], out):         # the bundle, and the export folder by its renamed files
        for backend in ("onnxruntime", "torch"):
            with AvatarEstimator.create_from_bundle(source, backend=backend, detection="none") as est:
                vectors[(str(source), backend)] = est.estimate(img, color_order="rgb").vector
    first = next(iter(vectors.values()))
    for v in vectors.values():
        assert v.keys() == first.keys()
        for k, x in v.items():
            assert x == pytest.approx(first[k], abs=1e-4), (k, vectors)
    # and the folder reader no longer accepts the old name
    with pytest.raises(Exception, match="net_float.onnx"):
        monkeypatch.setattr(contract, "MODEL_ROWS", _rename("onnx", "fp32", "net_float.onnx"))
        (out / "net_float.onnx").rename(out / "estimator.onnx")
        open_model_source(out)


def test_sdk_runs_its_torch_backend_without_the_toolchain(tiny_export):  # noqa: F811 - fixture
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with AvatarEstimator.create_from_bundle(tiny_export, backend="onnxruntime", detection="none") as est:
        expected = est.estimate(img, color_order="rgb").vector
    code = (
        "import sys, json, numpy as np\n"
        "for m in ('toolchain', 'converters'): sys.modules[m] = None\n"
        "from sdk_python import AvatarEstimator\n"
        f"img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)\n"
        f"with AvatarEstimator.create_from_bundle({str(tiny_export)!r}, backend='torch', detection='none') as e:\n"
        "    assert e.backend_name == 'torch'\n"
        "    print(json.dumps(e.estimate(img, color_order='rgb').vector))\n"
        "assert not [m for m in sys.modules if m.startswith(('toolchain.', 'converters.'))]\n")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


def test_the_sdk_imports_nothing_from_toolchain_or_converters():
    for path in (ROOT / "sdk_python").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            assert not [n for n in names if n.split(".")[0] in ("toolchain", "converters")], (path, names)


def test_every_contract_row_loads_by_its_precision_name():
    files = ModelFiles({r.key: Path(r.file) for r in contract.rows()},
                       {r.key: {"status": contract.VALIDATED} for r in contract.rows()})
    for r in contract.rows():
        choice = files.choose(r.runtime, r.precision)
        assert choice is not None and choice.key == r.key and choice.path == Path(r.file), r
    # keys come from (format, precision) in a bundle's manifest, so CoreML int8 is no longer keyed as fp16/"coreml"
    assert files.choose("coreml", "int8").key == "coreml_int8" and files.choose("litert", "dynamic_int8").path.name == \
        "estimator_dynamic_int8.tflite"


@pytest.mark.slow
def test_dynamic_int8_tflite_runs_by_precision_name(tflite_export):
    folder, report = tflite_export
    row = next(r for r in report["rows"] if r["precision"] == "dynamic_int8")
    assert row["status"] in (contract.VALIDATED, contract.BELOW) and row["bundled"] in (True, False)
    x = np.random.default_rng(3).normal(size=(1, 3, SIZE, SIZE)).astype(np.float32)
    with AvatarEstimator.create_from_bundle(folder, backend="litert", precision="dynamic_int8",
                                            detection="none") as est:
        assert (est.backend.precision, est.backend.model.key) == ("dynamic_int8", "tflite_dynamic_int8")
        got = est.backend.run(x)
    with AvatarEstimator.create_from_bundle(folder, backend="onnxruntime", detection="none") as ref:
        want = ref.backend.run(x)
    assert set(got) == set(want) and "continuous" in got
    # continuous outputs are fractions of each parameter's range: int8 weights keep them close
    assert np.abs(got["continuous"] - want["continuous"]).max() < 0.1


def test_image_layout_models_get_the_crop_pixels_back():
    """A CoreML model's input is an RGB image normalised inside (contract layout ``image``, as the exporter
    builds it): the backend hands it the very crop the estimator normalised, as a picture, not the floats."""
    from PIL import Image

    from sdk_python.backends.coreml_backend import CoreMLBackend
    mean, std = (0.5, 0.45, 0.4), (0.25, 0.22, 0.2)
    crop = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = ((crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
          - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))).astype(np.float32)
    fed = []

    class FakeModel:   # coremltools predicts only on macOS: stand in for MLModel.predict
        def predict(self, feed):
            fed.append(feed["image"])
            return {"continuous": np.zeros((1, 2), np.float32)}

    be = CoreMLBackend.__new__(CoreMLBackend)
    be.model, be.input_name, be.image_input, be.output_names = FakeModel(), "image", True, ["continuous"]
    be.normalization = (mean, std)
    be.run(x)
    assert isinstance(fed[0], Image.Image) and np.array_equal(np.asarray(fed[0]), crop)
