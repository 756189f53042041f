"""The face-detector models a bundle carries: the model contract's detectors (MediaPipe's BlazeFace
short-range and full-range), fetched by the SDK's one fetcher (:func:`sdk_python.detector_models.fetch_model`:
the file is taken from the pinned mediapipe wheel with ``pip download``, checked against its sha256, cached),
or, for the short-range one, a file the user gives. Either way its licence text goes into the bundle beside it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sdk_python import contract
from toolchain.errors import AvatarToolError

APACHE_TEXT = Path(__file__).resolve().parent / "licenses" / "APACHE-2.0.txt"


def detector_name(kind: str = "short") -> str:
    """The detector's file name (and bundle member name), from the contract."""
    return contract.detector(kind).file


def wheel_source(kind: str = "short") -> str:
    pin = contract.detector(kind)
    return (f"{contract.DETECTOR_WHEEL} wheel (pypi.org/project/mediapipe), member {pin.wheel_member}; "
            f"Copyright Google LLC, Apache License 2.0")


@dataclass
class DetectorFile:
    path: Path
    sha256: str
    source: str
    license_text: str


def licence_text(source: str, kind: str = "short") -> str:
    header = (f"{detector_name(kind)}\n\nSource: {source}\n"
              "This model is distributed under the Apache License, Version 2.0, reproduced below.\n\n")
    return header + APACHE_TEXT.read_text()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_model(path: Path) -> None:
    data = path.read_bytes()[:8]
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise AvatarToolError(f"{path} is not a TFLite model (no TFL3 identifier)")


def find_face_detector(path: str | Path | None = None, allow_download: bool = True, kind: str = "short") -> DetectorFile:
    """The ``kind`` detector from ``path``, else the SDK's cache, else (``allow_download``) the pinned mediapipe
    wheel.

    Raises:
        AvatarToolError: not found; the message says how to provide it.
    """
    from sdk_python.detector_models import fetch_model, find_model
    from sdk_python.errors import DetectorModelUnavailableError
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise AvatarToolError(f"--face-detector {p}: no such file")
        _check_model(p)
        return DetectorFile(p, _sha256(p), f"user-supplied file {p.name} (check its licence; "
                                           f"MediaPipe's is Apache-2.0)", licence_text(f"user-supplied file {p.name}"))
    found = find_model(kind)
    if found is None:
        if not allow_download:
            raise AvatarToolError(f"no {contract.detector(kind).label} on this machine; "
                                  + ("pass --face-detector PATH (MediaPipe's " + detector_name(kind) + ") or " if kind == "short" else "")
                                  + f"allow fetching it from the {contract.DETECTOR_WHEEL} wheel")
        try:
            found = fetch_model(kind)
        except DetectorModelUnavailableError as exc:
            raise AvatarToolError(str(exc)) from None
    _check_model(found)
    return DetectorFile(found, _sha256(found), wheel_source(kind), licence_text(wheel_source(kind), kind))
