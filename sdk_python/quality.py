"""Input-quality feedback for one face: is this photo good enough to judge the avatar from?

Measured on the face itself (the canonical aligned crop of :mod:`sdk_python.framing` at
:data:`CROP` px, so numbers do not depend on the photo's resolution) plus the detector keypoints:

* ``size_px``: the detector box's shorter side in input pixels;
* ``blur``: variance of the Laplacian of the crop's luminance, contrast-normalised to a standard
  deviation of 50 grey levels (low = soft / out of focus; a dark face is not a blurred one);
* ``brightness`` (mean luminance 0..1) and ``dark_fraction`` / ``bright_fraction`` (clipped pixels);
* ``grayscale``: the whole image carries no colour, so colour parameters cannot be judged;
* ``yaw`` / ``pitch`` / ``roll`` in degrees, from the keypoints (see :func:`head_pose`);
* ``warnings``: short sentences for a user, from the thresholds in :data:`THRESHOLDS`.

The thresholds come from ``python -m benchmarks quality`` (the positives of
``benchmarks/face_corpus.py`` against blurred, darkened, brightened and rotated copies; README "Input
quality"); they flag the degraded copies and leave the clean photos alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .face_check import geometry
from .framing import align
from .result import FaceDetection

CROP = 128

#: Warning thresholds (see module doc for where they come from).
THRESHOLDS = {
    "min_size_px": 64,        # below: the crop is upsampled, fine detail (glasses, eye style) is guessed
    "min_blur": 300.0,        # clean photos: 5th percentile 1100; blurred by 0.08 eye distances: 95th 183
    "min_brightness": 0.25,   # clean: 5th percentile 0.34; darkened x0.25: 95th 0.18
    "max_brightness": 0.80,   # clean: 95th percentile 0.73; overexposed x2.5: median 0.89
    "max_clipped": 0.25,      # share of crop pixels at <= 5 or >= 250
    "max_yaw": 25.0,          # clean: 5th..95th percentile -9..13 degrees
    "max_pitch": 35.0,        # clean: 95th percentile 32 degrees: the coarsest of the three estimates
    "max_roll": 20.0,         # clean: within 11 degrees; tilted 35 degrees: 95th percentile 24
}

# Pose model: a mean head seen frontally. Units: inter-ocular distance. The nose tip sits about a
# third of the eye distance in front of the eye plane; frontal nose/mouth ratio from the portraits.
_NOSE_DEPTH = 0.32
_FRONTAL_NOSE_MOUTH = 0.57
_PITCH_GAIN = 0.20   # -d(nose_below / mouth_below) / d(pitch), per radian, for that head (nose 0.7 down,
                     # mouth 1.1 down and 0.15 in front, in eye distances)


@dataclass(frozen=True)
class FaceQuality:
    """Quality measures and warnings for one face (see module doc for each field)."""

    size_px: float
    blur: float
    brightness: float
    dark_fraction: float
    bright_fraction: float
    grayscale: bool
    yaw: Optional[float]
    pitch: Optional[float]
    roll: Optional[float]
    unreliable_parameters: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        r = lambda v, n=3: None if v is None else round(float(v), n)  # noqa: E731
        return {"size_px": r(self.size_px, 1), "blur": r(self.blur, 1), "brightness": r(self.brightness),
                "dark_fraction": r(self.dark_fraction), "bright_fraction": r(self.bright_fraction),
                "grayscale": self.grayscale, "yaw": r(self.yaw, 1), "pitch": r(self.pitch, 1), "roll": r(self.roll, 1),
                "unreliable_parameters": list(self.unreliable_parameters), "warnings": list(self.warnings)}


def is_grayscale(image: np.ndarray, tol: int = 4) -> bool:
    """No colour anywhere: on a ~40k-pixel subsample, at most 1 % of pixels have two channels more
    than ``tol`` levels apart."""
    step = max(1, int(math.sqrt(image.shape[0] * image.shape[1] / 40_000)))
    a = image[::step, ::step]
    # per-channel differences: numpy's reductions over a 3-long last axis are ~10x slower than this
    r, g, b = (a[..., c].astype(np.int16) for c in range(3))
    colourful = (np.abs(r - g) > tol) | (np.abs(g - b) > tol) | (np.abs(r - b) > tol)
    return int(np.count_nonzero(colourful)) <= 0.01 * colourful.size


def color_parameters(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """Parameters that describe a colour, from the engine schema.

    A schema may mark them (``"color": true`` on a parameter); when none is marked (schemas written
    before the flag), a parameter counts as colour when its name says so (``color``, ``colour``,
    ``tone``: ``hair_color``, ``skin_tone``, ``eye_color``).
    """
    params = list(schema.get("params", []))
    if any("color" in p for p in params):
        return tuple(p["name"] for p in params if p.get("color"))
    words = ("color", "colour", "tone")
    return tuple(p["name"] for p in params if any(w in str(p.get("name", "")).lower() for w in words))


def head_pose(face: FaceDetection) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """``(yaw, pitch, roll)`` in degrees from the four keypoints, or Nones without them.

    Roll: the eye line's angle. Yaw: how far the nose tip sits from the eyes' midpoint along the eye
    line, for a nose :data:`_NOSE_DEPTH` eye distances in front of the eyes (positive: the subject turns
    to their left, the image's right). Pitch: the nose tip's height between eye line and mouth
    against the frontal ratio (positive: chin up). A coarse estimate (+-10 degrees): good enough
    to say "face the camera", not for measurement.
    """
    g = geometry(face)
    if g is None:
        return None, None, None
    # eyes at +-0.5, nose tip _NOSE_DEPTH in front: under yaw t it projects at 0.5 + depth * tan(t) along the line
    yaw = math.degrees(math.atan((g.nose_along - 0.5) / _NOSE_DEPTH))
    pitch = None
    if g.mouth_below > 1e-6:
        pitch = math.degrees((_FRONTAL_NOSE_MOUTH - g.nose_below / g.mouth_below) / _PITCH_GAIN)
    return yaw, pitch, g.roll_deg


#: The inner face (eyes to chin, cheek to cheek) on the 256 px design canvas: x0, y0, x1, y1. The
#: measures look at it alone, not at hair or background.
_INNER = (84, 100, 172, 184)


def _inner_window(size: int) -> tuple[int, int, int, int]:
    s = size / 256.0
    return tuple(int(v * s) for v in _INNER)  # type: ignore[return-value]


def _stats(inner: np.ndarray) -> tuple[float, float, float, float]:
    """Blur, brightness, dark and bright fractions of an inner-face region (``uint8 [h, w, 3]``)."""
    y = inner.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    # contrast-normalised (std 50 grey levels) so a dark or flat-lit face does not read as blurred
    norm = (y - y.mean()) * (50.0 / max(float(y.std()), 2.0))
    lap = norm[1:-1, 1:-1] * -4 + norm[:-2, 1:-1] + norm[2:, 1:-1] + norm[1:-1, :-2] + norm[1:-1, 2:]
    return (float(lap.var()), float(y.mean() / 255.0), float((y <= 5).mean()), float((y >= 250).mean()))


def assess(image: np.ndarray, face: FaceDetection, color_params: Sequence[str] = (),
           grayscale: Optional[bool] = None, thresholds: Mapping[str, float] = THRESHOLDS) -> FaceQuality:
    """Measure one face.

    Args:
        image: ``uint8 [H, W, 3]`` RGB, the image the face was found in.
        face: The detection (keypoints in ``image`` pixels).
        color_params: Names of the colour parameters (:func:`color_parameters`), flagged unreliable on
            a grayscale image.
        grayscale: Precomputed :func:`is_grayscale` of ``image`` (computed here when ``None``).

    Returns:
        The measures and the warnings they trigger.
    """
    t = thresholds
    size = float(min(face.box.width, face.box.height))
    gray = is_grayscale(image) if grayscale is None else grayscale
    try:
        blur, bright, dark, clip_hi = _stats(align(image, face.keypoints, CROP, window=_inner_window(CROP)))
    except ValueError:   # keypoints missing or off the image: measure the box instead
        b = face.box
        region = image[max(int(b.y), 0):max(int(b.y + b.height), 1), max(int(b.x), 0):max(int(b.x + b.width), 1)]
        (rh, rw), (x0, y0, x1, y1) = region.shape[:2], _INNER
        inner = region[int(y0 * rh / 256):int(y1 * rh / 256), int(x0 * rw / 256):int(x1 * rw / 256)]
        blur, bright, dark, clip_hi = (_stats(inner) if inner.size else (0.0, 0.0, 0.0, 0.0))
    yaw, pitch, roll = head_pose(face)
    warn = []
    if size < t["min_size_px"]:
        warn.append(f"face is small ({size:.0f} px; {t['min_size_px']:.0f}+ is better): move closer or use a "
                    "higher-resolution photo")
    if blur < t["min_blur"]:
        warn.append(f"face looks blurred (sharpness {blur:.0f} < {t['min_blur']:.0f}): hold still, focus on the face")
    if bright < t["min_brightness"] or dark > t["max_clipped"]:
        warn.append(f"face is dark (brightness {bright:.2f}): add light in front of the face")
    elif bright > t["max_brightness"] or clip_hi > t["max_clipped"]:
        warn.append(f"face is overexposed (brightness {bright:.2f}): avoid direct light or flash")
    if gray:
        warn.append("black-and-white photo: " + (", ".join(color_params) if color_params else "colours")
                    + " cannot be judged")
    turned = []
    if yaw is not None and abs(yaw) > t["max_yaw"]:
        turned.append(f"yaw {yaw:+.0f} deg")
    if pitch is not None and abs(pitch) > t["max_pitch"]:
        turned.append(f"pitch {pitch:+.0f} deg")
    if roll is not None and abs(roll) > t["max_roll"]:
        turned.append(f"roll {roll:+.0f} deg")
    if turned:
        warn.append("head is turned or tilted (" + ", ".join(turned) + "): face the camera")
    return FaceQuality(size_px=size, blur=blur, brightness=bright, dark_fraction=dark, bright_fraction=clip_hi,
                       grayscale=gray, yaw=yaw, pitch=pitch, roll=roll,
                       unreliable_parameters=tuple(color_params) if gray else (), warnings=tuple(warn))
