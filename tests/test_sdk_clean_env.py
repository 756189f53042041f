"""The SDK imports and runs with only numpy, Pillow, onnxruntime (and mediapipe) installed: a fresh
virtual environment, no torch, tensorflow, coremltools or toolchain. Slow (a pip install) but run."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ._ci import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sdk_in_a_clean_venv(tmp_path, tiny_export, detector_model, astronaut):
    import numpy as np
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # --no-compile: the venv lives for this test only; the few modules it imports compile on first import
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    proc = subprocess.run(pip + ["numpy", "pillow", "onnxruntime", "mediapipe"], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        skip_unless_ci(f"pip could not install the SDK's dependencies here: {proc.stderr.strip()[-300:]}")
    np.save(tmp_path / "photo.npy", astronaut)
    # The SDK folder alone on the path (a copy: the repository root would also expose toolchain/converters).
    import shutil
    shutil.copytree(ROOT / "sdk_python", tmp_path / "src" / "sdk_python",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = textwrap.dedent(f"""
        import sys, numpy as np
        import sdk_python
        from sdk_python import AvatarEstimator, NoFaceError
        forbidden = [m for m in ("torch", "tensorflow", "coremltools", "toolchain", "converters") if m in sys.modules]
        assert not forbidden, forbidden
        for m in ("torch", "tensorflow", "coremltools", "toolchain"):
            try:
                __import__(m)
                raise SystemExit(f"{{m}} is importable in the clean venv")
            except ImportError:
                pass
        with AvatarEstimator.create_from_bundle({str(tiny_export / 'estimator.onnx')!r},
                                                detector_model_path={str(detector_model)!r}) as est:
            name = est.backend_name
            r = est.estimate(np.load({str(tmp_path / 'photo.npy')!r}), color_order="rgb")
            assert r.face.score > 0.8 and len(r.vector) == 6, r
            try:
                est.estimate(np.full((200, 200, 3), 80, np.uint8), color_order="rgb")
                raise SystemExit("a blank grey image gave a face")
            except NoFaceError as exc:
                assert "no face found" in str(exc), exc
            try:
                AvatarEstimator.create_from_bundle({str(tiny_export / 'estimator.onnx')!r}, backend="torch")
                raise SystemExit("torch backend should be unavailable")
            except sdk_python.BackendUnavailableError as exc:
                assert "not installed" in str(exc), exc
        print("CLEAN-OK", name)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(tmp_path / "src")
    proc = subprocess.run([str(py), "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0 and "CLEAN-OK onnxruntime" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
