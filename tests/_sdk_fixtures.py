"""Shared fixtures for the SDK tests: a tiny exported estimator, the face-detector model, real photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ._ci import skip_unless_ci


def noise_image_folder(folder: Path, n: int, size: int = 40) -> Path:
    """``n`` random RGB PNGs (``00.png``...): stand-in calibration / evaluation images for export tests."""
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """An export folder like `avatartool export` writes: estimator.onnx (with metadata) + estimator.pt2 (torch.export),
    for a random-init alter estimator with a 32 px input (fast; agreement between backends still holds)."""
    import torch

    from converters.metadata import build_metadata
    from converters.onnx_export import export_onnx
    from converters.torch_export import export_torch
    from toolchain.engines.alter import ALTER_SCHEMA
    from toolchain.estimator.model import AvatarEstimator, EstimatorConfig

    out = tmp_path_factory.mktemp("sdk-export")
    torch.manual_seed(0)
    model = AvatarEstimator(EstimatorConfig(input_size=32, head_hidden=16, schema=ALTER_SCHEMA.to_json())).eval()
    export_onnx(model, out / "estimator.onnx", build_metadata(model))
    export_torch(model, out / "estimator.pt2", build_metadata(model))
    return out


def _mediapipe_model(kind: str) -> Path:
    """The ``kind`` MediaPipe model from the SDK cache (fetched once from the pinned wheel); skipped where it
    cannot be had, except under CI, which reaches the registry (offline laptops may not)."""
    from sdk_python import contract
    from sdk_python.detector_models import fetch_model
    from sdk_python.errors import DetectorModelUnavailableError
    try:
        return fetch_model(kind)
    except DetectorModelUnavailableError as exc:
        skip_unless_ci(f"{contract.detector(kind).label} unavailable: {exc}")


@pytest.fixture(scope="session")
def face_mesh_model() -> Path:
    """The face-mesh model of the face checks' presence test (in the SDK cache, where the estimator finds it)."""
    return _mediapipe_model("mesh")


@pytest.fixture(scope="session")
def detector_model(face_mesh_model) -> Path:
    """The short-range detector; depends on the face-mesh model so every detecting test runs the full checks."""
    return _mediapipe_model("short")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut()


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    import matplotlib.cbook as cbook
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture(scope="session")
def full_range_model() -> Path:
    return _mediapipe_model("full")
