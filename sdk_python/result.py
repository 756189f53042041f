"""Result dataclasses returned by :class:`~sdk_python.AvatarEstimator`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

if TYPE_CHECKING:
    from .quality import FaceQuality

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
"""BlazeFace keypoint order. "right"/"left" are the subject's: ``right_eye`` is on the image's left."""


@dataclass(frozen=True)
class FaceBox:
    """A face box in pixels of the (EXIF-rotated) input image."""

    x: float
    y: float
    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True)
class FaceDetection:
    """One detected (or tracked) face.

    Attributes:
        box: The face's box in input pixels: the detector's, or, for a face tracked in VIDEO mode, the box
            around its face-mesh landmarks.
        keypoints: Named ``(x, y)`` pixel positions (see :data:`KEYPOINT_NAMES`); empty when
            detection is off. With the face mesh (``keypoint_source="mesh"``, and every tracked frame) the
            four the crop is aligned on come from its landmarks (:mod:`sdk_python.face_mesh`).
        score: Detector confidence in [0, 1] (1.0 when detection is off; the face-mesh presence for a
            tracked face).
        landmarks: MediaPipe's 468 face-mesh landmarks, ``[468, 3]`` (x, y in input pixels, z relative
            depth at the same scale), when the face mesh ran on this face; else ``None``.
        presence: The face mesh's face-presence probability for this face, when it ran.
    """

    box: FaceBox
    keypoints: dict[str, tuple[float, float]]
    score: float
    landmarks: Optional[np.ndarray] = field(default=None, compare=False, repr=False)
    presence: Optional[float] = None


@dataclass(frozen=True)
class ParameterEstimate:
    """The estimate for one avatar parameter.

    Attributes:
        name: Parameter name from the schema.
        kind: ``"continuous"`` or ``"discrete"``.
        value: Engine value: a float in the parameter's range, or an option index.
        label: The option label (discrete) or ``None``.
        confidence: Discrete: the probability of the chosen option — temperature-scaled when the bundle
            carries the exporter's calibration (``AvatarEstimator.calibrated``), else the raw softmax.
            Continuous: ``None`` (the head regresses a value, it has no probability; see ``raw``).
        raw: Continuous: the head output in [0, 1] before scaling to the range. Discrete: ``None``.
        probabilities: Discrete: the probability of every option, in option order.
        alternatives: Discrete: the most probable options, best first, as ``(index, label, probability)``
            (an edit UI offers these). Continuous: empty.
        uncertainty: Continuous, with ``mirror_tta``: half the disagreement between the crop's and its mirror's
            estimates, in the parameter's units (a spread, not a calibrated interval). Without it ``None``: the
            estimator regresses a point value and gives no uncertainty of its own.
    """

    name: str
    kind: str
    value: Union[float, int]
    label: Optional[str] = None
    confidence: Optional[float] = None
    raw: Optional[float] = None
    probabilities: Optional[tuple[float, ...]] = None
    alternatives: tuple[tuple[int, str, float], ...] = ()
    uncertainty: Optional[float] = None


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent per step of one call (detection runs once per image; crop and inference
    are summed over faces when several are estimated).

    Attributes:
        load_ms: Decoding / validating the input image.
        detection_ms: The face-detector models (0 on a tracked VIDEO frame).
        checks_ms: The keypoint-layout and skin checks on the detections.
        landmarks_ms: The face-mesh model: presence test, landmarks for the aligned crop, tracking.
        crop_ms: Aligning and normalising the crop, input-quality measures (and, with the detector's
            keypoints, the keypoint-refining second detection).
        inference_ms: The estimator runtime.
        decode_ms: Turning its outputs into parameters (and VIDEO smoothing).
        total_ms: The whole call.
    """

    load_ms: float = 0.0
    detection_ms: float = 0.0
    crop_ms: float = 0.0
    inference_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0
    checks_ms: float = 0.0
    landmarks_ms: float = 0.0


@dataclass(frozen=True)
class AvatarFace:
    """The avatar estimated for one face.

    Attributes:
        face: Where the face is.
        parameters: Per-parameter estimates, in schema order.
        vector: ``{name: value}`` ready for the engine's ``render`` (floats and option indices).
        quality: Input-quality measures and warnings for this face (``None`` with ``quality=False``
            or ``detection='none'``).
    """

    face: FaceDetection
    parameters: dict[str, ParameterEstimate]
    vector: dict[str, Union[float, int]]
    quality: Optional["FaceQuality"] = None


@dataclass(frozen=True)
class AvatarEstimatorResult:
    """What one :meth:`estimate` / :meth:`estimate_for_video` call returns.

    ``avatars`` holds one entry per estimated face, largest first (one unless the policy is
    ``MultipleFacePolicy.ALL``); ``face``, ``parameters`` and ``vector`` are shortcuts to the first.
    ``faces_found`` counts every face the detector accepted in the image, estimated or not (with
    ``LARGEST``, 3 means two other people were ignored); ``detectors`` names the models that ran.
    ``tracked`` is ``True`` for a VIDEO frame whose face region came from the previous frame's face-mesh
    landmarks, the detector not run (``detectors`` is then empty and ``faces_found`` is the one face
    followed); ``False`` when the detector found the face in this call.
    """

    avatars: tuple[AvatarFace, ...]
    timings: Timings
    timestamp_ms: Optional[int] = None
    extras: dict = field(default_factory=dict)
    faces_found: int = 1
    detectors: tuple[str, ...] = ()
    tracked: bool = False

    @property
    def warnings(self) -> tuple[str, ...]:
        """The first face's input-quality warnings (empty when there are none or quality is off)."""
        q = self.avatars[0].quality
        return q.warnings if q is not None else ()

    @property
    def face(self) -> FaceDetection:
        return self.avatars[0].face

    @property
    def parameters(self) -> dict[str, ParameterEstimate]:
        return self.avatars[0].parameters

    @property
    def vector(self) -> dict[str, Union[float, int]]:
        return self.avatars[0].vector

    def to_json(self) -> dict:
        """A JSON-ready dict (vectors, labels, confidences, boxes, timings)."""
        def face_json(a: AvatarFace) -> dict:
            b = a.face.box
            return {"box": [b.x, b.y, b.width, b.height], "score": a.face.score, "presence": a.face.presence,
                    "keypoints": {k: list(v) for k, v in a.face.keypoints.items()},
                    "vector": a.vector,
                    "parameters": {p.name: {"value": p.value, "label": p.label, "confidence": p.confidence,
                                            "raw": p.raw, "alternatives": [list(x) for x in p.alternatives],
                                            "uncertainty": p.uncertainty}
                                   for p in a.parameters.values()},
                    "quality": a.quality.to_json() if a.quality is not None else None}
        t = self.timings
        return {"avatars": [face_json(a) for a in self.avatars], "faces_found": self.faces_found,
                "detectors": list(self.detectors), "tracked": self.tracked, "timestamp_ms": self.timestamp_ms,
                "timings_ms": {"load": t.load_ms, "detection": t.detection_ms, "checks": t.checks_ms,
                               "landmarks": t.landmarks_ms, "crop": t.crop_ms, "inference": t.inference_ms,
                               "decode": t.decode_ms, "total": t.total_ms}}
