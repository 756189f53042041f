"""The face-detector model the SDK needs: MediaPipe's ``face_detection_short_range.tflite``.

mediapipe 1.x wheels no longer ship it and mediapipe 0.10.21 cannot be installed beside tensorflow
2.21 (protobuf pins), so the file is taken from the 0.10.21 wheel without installing it:
``python -m pip download --no-deps mediapipe==0.10.21`` (the package registry is reachable; nothing
else is), then the zip member is extracted into a cache folder. Users can pass their own copy instead.
The model carries the NormalizationOptions metadata the MediaPipe Tasks FaceDetector requires.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import AvatarToolError

DETECTOR_NAME = "face_detection_short_range.tflite"
WHEEL_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
MEDIAPIPE_VERSION = "0.10.21"
EXPECTED_SIZE = 229_714
SOURCE = (f"mediapipe {MEDIAPIPE_VERSION} wheel (pypi.org/project/mediapipe), member {WHEEL_MEMBER}; "
          "Copyright Google LLC, Apache License 2.0")
APACHE_TEXT = Path(__file__).resolve().parent / "licenses" / "APACHE-2.0.txt"


def cache_dir() -> Path:
    return Path(os.environ.get("SWIFTAVATAR_CACHE", Path.home() / ".cache" / "swiftavatar"))


@dataclass
class DetectorFile:
    path: Path
    sha256: str
    source: str
    license_text: str


def licence_text(source: str) -> str:
    header = (f"{DETECTOR_NAME}\n\nSource: {source}\n"
              "This model is distributed under the Apache License, Version 2.0, reproduced below.\n\n")
    return header + APACHE_TEXT.read_text()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_model(path: Path) -> None:
    data = path.read_bytes()[:8]
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise AvatarToolError(f"{path} is not a TFLite model (no TFL3 identifier)")


def fetch_from_wheel(dest_dir: Path | None = None, timeout: float = 600) -> Path:
    """Download the mediapipe 0.10.21 wheel (no dependencies, not installed) and extract the detector.

    Raises:
        AvatarToolError: pip could not fetch the wheel or the member is missing.
    """
    dest_dir = Path(dest_dir or cache_dir())
    dest_dir.mkdir(parents=True, exist_ok=True)
    wheels = dest_dir / "wheels"
    found = sorted(wheels.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl")) if wheels.is_dir() else []
    if not found:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", f"mediapipe=={MEDIAPIPE_VERSION}",
                               "-d", str(wheels), "--quiet"], capture_output=True, text=True, timeout=timeout)
        found = sorted(wheels.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
        if proc.returncode != 0 or not found:
            raise AvatarToolError(f"could not download mediapipe {MEDIAPIPE_VERSION} to take the face detector from it: "
                                  f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or 'no wheel'}")
    try:
        with zipfile.ZipFile(found[-1]) as zf:
            data = zf.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise AvatarToolError(f"{found[-1]} has no {WHEEL_MEMBER}: {exc}") from None
    out = dest_dir / DETECTOR_NAME
    with tempfile.NamedTemporaryFile(dir=dest_dir, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, out)
    return out


def find_face_detector(path: str | Path | None = None, allow_download: bool = True) -> DetectorFile:
    """The detector from ``path``, else the cache, else (``allow_download``) the mediapipe wheel.

    Raises:
        AvatarToolError: not found; the message says how to provide it.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise AvatarToolError(f"--face-detector {p}: no such file")
        _check_model(p)
        return DetectorFile(p, _sha256(p), f"user-supplied file {p.name} (check its licence; "
                                           f"MediaPipe's is Apache-2.0)", licence_text(f"user-supplied file {p.name}"))
    cached = cache_dir() / DETECTOR_NAME
    if not cached.is_file():
        if not allow_download:
            raise AvatarToolError(f"no face detector: {cached} does not exist; pass --face-detector PATH "
                                  f"(MediaPipe's {DETECTOR_NAME}) or allow fetching it from the mediapipe "
                                  f"{MEDIAPIPE_VERSION} wheel")
        fetch_from_wheel()
    _check_model(cached)
    return DetectorFile(cached, _sha256(cached), SOURCE, licence_text(SOURCE))


def copy_detector(det: DetectorFile, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(det.path, dest)
    return dest
