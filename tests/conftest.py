"""Suite-wide settings: the machine-wide G_real cache is off unless a test turns it on, so a build in one
test never reuses a generator another test trained (the cache tests point it at their own folder); fixtures
shared by several test modules that are too slow to make once per module."""
import os
from pathlib import Path

import pytest

os.environ["SWIFTAVATAR_GAN_CACHE"] = "off"

# the SDK fixtures (a tiny export, the MediaPipe models, photos) once per session, not once per module that uses them
pytest_plugins = ["tests._sdk_fixtures"]


@pytest.fixture(scope="session")
def tflite_export(tmp_path_factory) -> tuple[Path, dict]:
    """One exporter run (``export_model``, parity gated, bundled) of a random-init morph estimator (continuous and
    discrete heads) at 32 px to ONNX, TFLite fp16 and TFLite dynamic-range int8: onnx2tf makes both TFLite files
    in one ~35 s conversion, which the contract's precision-by-name test and the LiteRT backend test share.
    Returns the export folder and the export report."""
    import torch

    from toolchain.engines.registry import create_engine
    from toolchain.estimator.model import AvatarEstimator, EstimatorConfig
    root = tmp_path_factory.mktemp("tflite-export")
    torch.manual_seed(0)
    # the model (torchvision) before onnx2tf (TensorFlow): torchvision's import segfaults after TensorFlow's here
    model = AvatarEstimator(EstimatorConfig(input_size=32, schema=create_engine("morph").schema.to_json())).eval()
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, root / "estimator.pt")
    from tests._ci import import_or_skip_unless_ci
    from tests._sdk_fixtures import noise_image_folder
    import_or_skip_unless_ci("onnx2tf")
    from converters.export import ExportOptions, export_model
    from converters.formats import parse_targets
    images = root / "images"
    images.mkdir()
    noise_image_folder(images, 12)
    detector = root / "detector.tflite"   # the bundle carries a detector file; these tests never run it
    detector.write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
    report = export_model(root / "estimator.pt", root / "export", ExportOptions(
        targets=parse_targets("onnx,tflite:fp16,tflite:dynamic_int8"), eval_set=images, face_detector=detector))
    return root / "export", report
