"""Is a detection shaped like a human face? A geometric check on BlazeFace's six keypoints.

BlazeFace answers for any patch with a face-like layout of light and dark; on random noise, textures
and drawn animals it returns boxes with scores up to ~0.5 whose keypoints are scattered: eyes at very
different heights, a "nose" outside the eyes, a "mouth" above the nose. A real face, even turned or
tilted, keeps a rigid layout. The measures below are in units of the eye distance, in the frame of the
eye line (so in-plane rotation does not matter), and the limits were set from the detections on the
corpus of ``benchmarks/face_corpus.py`` (``python -m benchmarks detection``: every positive face passes
them with a margin; see README "Face detection").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .result import FaceDetection


@dataclass(frozen=True)
class FaceGeometry:
    """Keypoint layout of one detection.

    Attributes:
        eye_distance_px: Distance between the eye keypoints in image pixels.
        eye_to_box: Eye distance / box width (a human face: about 0.3-0.5).
        roll_deg: Angle of the eye line (positive: the subject's head tilted towards the image's right).
        nose_along: Nose tip position along the eye line, 0 at the right eye, 1 at the left eye.
        nose_below: Nose tip distance below the eye line / eye distance.
        mouth_below: Mouth distance below the eye line / eye distance.
        mouth_along: Mouth position along the eye line (0..1 like ``nose_along``).
    """

    eye_distance_px: float
    eye_to_box: float
    roll_deg: float
    nose_along: float
    nose_below: float
    mouth_below: float
    mouth_along: float


# Limits: the range of every positive in the corpus (short-range detector: eye/box 0.38-0.47, roll
# within 20 degrees, nose 0.33-0.58 along and 0.41-0.70 below, mouth 0.94-1.13 below) widened for
# turned and tilted real faces; the noise/texture detections that pass the score threshold lie
# outside them (roll up to 65 degrees, eye/box down to 0.10, mouth up to 2.5 eye distances down).
LIMITS = {
    "eye_to_box": (0.28, 0.60),
    "roll_deg": (-40.0, 40.0),
    "nose_along": (-0.10, 1.10),
    "nose_below": (0.25, 1.00),
    "mouth_below": (0.75, 1.50),
    "mouth_along": (0.00, 1.00),
}


def geometry(face: FaceDetection) -> Optional[FaceGeometry]:
    """The layout measures, or ``None`` when the detection lacks the eye/nose/mouth keypoints."""
    k = face.keypoints
    if not all(n in k for n in ("right_eye", "left_eye", "nose_tip", "mouth")):
        return None
    re, le = np.asarray(k["right_eye"], float), np.asarray(k["left_eye"], float)
    axis = le - re
    d = float(np.hypot(*axis))
    if d < 1e-6:
        return None
    ux = axis / d
    uy = np.array([-ux[1], ux[0]])  # image y grows downwards: "below" the eye line is +uy

    def frame(p) -> tuple[float, float]:
        v = np.asarray(p, float) - re
        return float(v @ ux) / d, float(v @ uy) / d

    nose_a, nose_b = frame(k["nose_tip"])
    mouth_a, mouth_b = frame(k["mouth"])
    return FaceGeometry(eye_distance_px=d, eye_to_box=d / max(face.box.width, 1e-6),
                        roll_deg=float(np.degrees(np.arctan2(axis[1], axis[0]))), nose_along=nose_a,
                        nose_below=nose_b, mouth_below=mouth_b, mouth_along=mouth_a)


def implausible(face: FaceDetection) -> list[str]:
    """Why this detection is not laid out like a human face (empty: it is)."""
    g = geometry(face)
    if g is None:
        return ["no eye/nose/mouth keypoints"]
    out = []
    for name, (lo, hi) in LIMITS.items():
        v = getattr(g, name)
        if not lo <= v <= hi:
            out.append(f"{name} {v:.2f} outside [{lo}, {hi}]")
    if g.mouth_below <= g.nose_below:
        out.append("mouth not below the nose")
    return out


def plausible(face: FaceDetection) -> bool:
    return not implausible(face)


# Cheeks and nose on the canonical 256 px design canvas (sdk_python.framing): below the eyes (y 124),
# above the mouth line (y 166), inside the face outline.
_SKIN_BOX = (88, 136, 168, 160)   # x0, y0, x1, y1
MIN_SKIN_FRACTION = 0.10


def skin_fraction(image: np.ndarray, face: FaceDetection) -> Optional[float]:
    """Share of cheek/nose pixels whose chroma lies in the broad human-skin range (YCbCr: Cb 77..135,
    Cr 130..180, which holds every skin tone under ordinary light), or ``None`` when the region is
    colourless (a grayscale photo: colour cannot be judged, so it must not count against the face).

    Drawn animals with a face-like layout pass the geometry check; their fur is rarely skin-coloured.
    """
    from .framing import align
    try:
        reg = align(image, face.keypoints, 64, window=[int(round(v / 4)) for v in _SKIN_BOX]).astype(np.float32)
    except ValueError:
        return None
    r, g, b = reg[..., 0], reg[..., 1], reg[..., 2]
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    if abs(float(np.median(cb)) - 128) < 3 and abs(float(np.median(cr)) - 128) < 3:
        return None
    return float(((cb >= 77) & (cb <= 135) & (cr >= 130) & (cr <= 180)).mean())


def rejection(image: np.ndarray, face: FaceDetection, check_skin: bool = True) -> list[str]:
    """Every reason to reject ``face`` as not human (empty: keep it)."""
    why = implausible(face)
    if not why and check_skin:
        s = skin_fraction(image, face)
        if s is not None and s < MIN_SKIN_FRACTION:
            why.append(f"skin-coloured fraction {s:.2f} < {MIN_SKIN_FRACTION}")
    return why
