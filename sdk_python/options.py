"""``AvatarEstimatorOptions``: everything an :class:`~sdk_python.AvatarEstimator` is built from.

Mirrors MediaPipe Tasks' options dataclasses: one flat dataclass, enums for modes and policies,
validated once in :meth:`AvatarEstimatorOptions.validate`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from . import contract
from .errors import AvatarSDKError


class RunningMode(str, enum.Enum):
    """``IMAGE``: independent images, :meth:`estimate`. ``VIDEO``: frames of one stream with
    increasing timestamps, :meth:`estimate_for_video`, smoothed over time."""

    IMAGE = "image"
    VIDEO = "video"


class MultipleFacePolicy(str, enum.Enum):
    """What to do when an image holds more than one face."""

    LARGEST = "largest"   # estimate the largest face, ignore the others
    ERROR = "error"       # raise MultipleFacesError
    ALL = "all"           # estimate every face, largest first


class Detection(str, enum.Enum):
    """How the face is found. ``MEDIAPIPE``: the Tasks FaceDetector + aligned crop. ``NONE``: the
    input is already framed like the training images (e.g. an engine render or a pre-aligned crop):
    the whole image is resized to the estimator's input size, as in training."""

    MEDIAPIPE = "mediapipe"
    NONE = "none"


class DetectorMode(str, enum.Enum):
    """Which BlazeFace model finds the faces (see :mod:`sdk_python.face_finder`). ``SHORT``: selfies,
    faces filling much of the frame, fastest. ``FULL``: faces far from the camera (group photos).
    ``AUTO``: short first, full as well when short finds nothing or the image is large."""

    SHORT = "short"
    FULL = "full"
    AUTO = "auto"


BACKENDS = ("auto", "onnxruntime", "litert", "coreml", "torch")
PRECISIONS = ("auto", *contract.PRECISIONS)
KEYPOINT_SOURCES = ("mesh", "detector")
#: Where the face detector runs (see ``sdk_python.detector.RUNTIMES``).
DETECTOR_RUNTIMES = ("auto", "litert", "mediapipe")


@dataclass
class AvatarEstimatorOptions:
    """Options for :meth:`AvatarEstimator.create_from_options`.

    Attributes:
        bundle_path: A ``.swiftavatar`` bundle, or (until bundles are everywhere) a plain estimator
            ``.onnx``/``.tflite``/``.pt`` file with its JSON manifest beside it (``<file>.json``).
        backend: ``"auto"`` (first available of onnxruntime, litert, coreml, torch), or one name.
        precision: Which model of the bundle to run: ``"auto"`` or a contract precision (``"fp32"``, ``"fp16"``,
            ``"dynamic_int8"``, ``"int8"``). ``auto`` picks the fastest model whose parity status (from
            the exporter) is ``validated`` (for litert: int8, dynamic_int8, fp16, fp32 —
            ``contract.AUTO_PRECISION``); with none validated it
            falls back to the least quantised model not below its threshold, with a ``ParityWarning``, and it
            never picks a model below its threshold. An explicit precision runs its model whatever its
            status, with a ``ParityWarning`` naming the agreement if it is below its threshold.
        running_mode: ``RunningMode.IMAGE`` or ``RunningMode.VIDEO``.
        num_threads: CPU threads for the estimator runtime.
        min_face_confidence: Detections below this score are ignored (0.6: calibrated on the corpus of
            ``python -m benchmarks detection``, where noise reaches 0.63 with the full-range model).
        min_face_size: Smallest face estimated, as the detector box's shorter side in pixels; a face
            found but smaller raises ``FaceTooSmallError`` (with its size) instead of a guess.
        multiple_faces: :class:`MultipleFacePolicy` (or its string value).
        detection: :class:`Detection`; ``NONE`` skips the detector for pre-framed inputs.
        detector: :class:`DetectorMode` (or ``"short"``, ``"full"``, ``"auto"``).
        detector_model_path: Short-range face detector ``.tflite``; default: the bundle's, else the SDK
            cache (see :func:`sdk_python.detector.fetch_detector_model`).
        full_range_model_path: Full-range face detector ``.tflite``; default: the bundle's, else the
            SDK cache (:func:`sdk_python.detector_models.fetch_model`). With ``AUTO`` and no full-range
            model anywhere, detection runs short-range only (with a warning).
        face_mesh_model_path: MediaPipe's ``face_landmark.tflite`` for the face checks' presence test;
            default: the bundle's, else the SDK cache (``fetch_model("mesh")``); none anywhere: the other
            checks run alone, with a warning.
        detector_runtime: Where BlazeFace runs: ``"auto"`` (default: the short-range model on LiteRT directly,
            :mod:`sdk_python.blazeface`, with MediaPipe's pre- and post-processing restated, ~0.65 ms faster
            a detection on 2 cores; the full-range model through MediaPipe), ``"litert"`` or ``"mediapipe"`` (the Tasks
            ``FaceDetector`` graph for every model).
        tile_size: On large images (longer side >= 1024 px) the full-range detector also scans
            half-overlapping tiles of this side, finding faces down to about a tenth of it (640: ~60 px
            faces, +~40 ms; 320: ~40 px, +~160 ms on 2 cores); 0 turns tiling off.
        face_checks: Reject detections not laid out like a human face or without skin colour
            (:mod:`sdk_python.face_check`), or whose crop MediaPipe's face-mesh model does not take for a
            face (:mod:`sdk_python.face_presence`: ~1.2 ms per new face; in VIDEO mode a face already
            accepted in the previous frame is not asked again); off: every detection above the score counts.
        quality: Measure input quality per face (size, blur, exposure, grayscale, head pose) and
            attach it with warnings to each result (about 0.5 ms per face).
        keypoint_source: What the crop is aligned on. ``"mesh"`` (default): MediaPipe's face-mesh landmarks
            (the presence test already runs the model on every new face, so they cost nothing more there),
            moved onto the detector's keypoint convention by measured offsets: eyes and mouth land 1.8 px
            from the training framing in a 256 px crop, against 3.5 px for the refined detector keypoints
            (``python -m benchmarks mesh-keypoints``). ``"detector"``: BlazeFace's keypoints (refined with
            ``refine_keypoints``), in IMAGE mode and untracked VIDEO (a tracked stream aligns on the mesh on
            every frame, so the crop does not jump when tracking takes over). Without the face-mesh model the
            detector's are used.
        refine_keypoints: With the detector's keypoints: run the detector a second time on a window around
            each face before aligning, so keypoints come from the face at a fixed relative scale (more stable
            crops for small or off-centre faces; costs one more ~2 ms detection per face, skipped for a face
            that already fills most of the image: ``sdk_python.detector.MIN_REFINE_GAIN``).
        tracking: VIDEO mode: after a detection, take each frame's face region from the previous frame's
            face-mesh landmarks and run the detector again only when the face is lost (presence below 0.5,
            or it leaves the frame), after a timestamp gap longer than ``reset_after_ms``, and every
            ``redetect_every`` frames; ``result.tracked`` says which. Follows the largest face: with
            ``multiple_faces`` ``"error"`` or ``"all"`` (which need every frame's face count) and without the
            face-mesh model every frame is detected.
        redetect_every: VIDEO mode with ``tracking``: run the detector after this many tracked frames in a
            row even though the face is still followed (0: only when it is lost).
        mirror_tta: Also run the estimator on the mirrored crop and average the two answers (mirror-sensitive
            parameters mapped through the schema's ``mirror`` field), and average the keypoints of the image
            and its mirror before aligning (the face mesh's, or the refined detector's): steadier answers and
            crops, and a spread as each continuous parameter's ``uncertainty``, for twice the inference time and
            one more face-mesh run (or detection).
        color_order: Channel order of 3/4-channel numpy inputs, ``"rgb"`` or ``"bgr"`` (OpenCV).
            ``None`` makes every numpy input state it in the call; PIL images and files need nothing.
        smoothing_ms: VIDEO mode: time constant of the exponential smoothing (0 turns it off).
        hysteresis: VIDEO mode: a discrete choice changes only when the new option's smoothed
            probability beats the current one's by this margin.
        reset_after_ms: VIDEO mode: a gap longer than this restarts smoothing from the new frame.
        native_logs: Show what the native libraries (MediaPipe, LiteRT, absl) write to stderr while the
            estimator sets up, warms up and closes. ``None`` (default): hidden unless the environment variable
            ``SWIFTAVATAR_NATIVE_LOGS=1`` asks for them; Python warnings are never hidden.
    """

    bundle_path: Union[str, Path]
    backend: str = "auto"
    precision: str = "auto"
    running_mode: RunningMode = RunningMode.IMAGE
    num_threads: int = 2
    min_face_confidence: float = 0.6
    min_face_size: int = 24
    multiple_faces: MultipleFacePolicy = MultipleFacePolicy.LARGEST
    detection: Detection = Detection.MEDIAPIPE
    detector: DetectorMode = DetectorMode.AUTO
    detector_model_path: Optional[Union[str, Path]] = None
    full_range_model_path: Optional[Union[str, Path]] = None
    face_mesh_model_path: Optional[Union[str, Path]] = None
    detector_runtime: str = "auto"
    tile_size: int = 640
    face_checks: bool = True
    quality: bool = True
    keypoint_source: str = "mesh"
    refine_keypoints: bool = True
    tracking: bool = True
    redetect_every: int = 30
    mirror_tta: bool = False
    color_order: Optional[str] = None
    smoothing_ms: float = 150.0
    hysteresis: float = 0.15
    reset_after_ms: float = 1000.0
    native_logs: Optional[bool] = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> "AvatarEstimatorOptions":
        """Normalise enums and check ranges.

        Returns:
            ``self``, with string enum values turned into enums.

        Raises:
            AvatarSDKError: naming the bad option and its allowed values.
        """
        try:
            self.running_mode = RunningMode(self.running_mode)
            self.multiple_faces = MultipleFacePolicy(self.multiple_faces)
            self.detection = Detection(self.detection)
            self.detector = DetectorMode(self.detector)
        except ValueError as exc:
            raise AvatarSDKError(f"bad option: {exc}; running_mode is one of {[m.value for m in RunningMode]}, "
                                 f"multiple_faces one of {[m.value for m in MultipleFacePolicy]}, "
                                 f"detection one of {[m.value for m in Detection]}, "
                                 f"detector one of {[m.value for m in DetectorMode]}") from None
        if self.backend not in BACKENDS:
            raise AvatarSDKError(f"unknown backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise AvatarSDKError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if not isinstance(self.num_threads, int) or not 1 <= self.num_threads <= 64:
            raise AvatarSDKError(f"num_threads must be an integer in 1..64, got {self.num_threads!r}")
        if not 0.0 <= float(self.min_face_confidence) <= 1.0:
            raise AvatarSDKError(f"min_face_confidence must be in [0, 1], got {self.min_face_confidence!r}")
        if not isinstance(self.tile_size, int) or not (self.tile_size == 0 or self.tile_size >= 128):
            raise AvatarSDKError(f"tile_size must be 0 (off) or an integer >= 128, got {self.tile_size!r}")
        if not isinstance(self.min_face_size, int) or self.min_face_size < 1:
            raise AvatarSDKError(f"min_face_size must be a positive integer (pixels), got {self.min_face_size!r}")
        if self.color_order is not None and self.color_order.lower() not in ("rgb", "bgr"):
            raise AvatarSDKError(f"color_order must be 'rgb', 'bgr' or None, got {self.color_order!r}")
        if self.detector_runtime not in DETECTOR_RUNTIMES:
            raise AvatarSDKError(f"detector_runtime must be one of {', '.join(DETECTOR_RUNTIMES)}, got "
                                 f"{self.detector_runtime!r}")
        if self.keypoint_source not in KEYPOINT_SOURCES:
            raise AvatarSDKError(f"keypoint_source must be one of {', '.join(KEYPOINT_SOURCES)}, got "
                                 f"{self.keypoint_source!r}")
        if isinstance(self.redetect_every, bool) or not isinstance(self.redetect_every, int) or self.redetect_every < 0:
            raise AvatarSDKError(f"redetect_every must be a non-negative integer (frames; 0: only when the face is "
                                 f"lost), got {self.redetect_every!r}")
        if self.smoothing_ms < 0 or not 0 <= self.hysteresis < 1 or self.reset_after_ms <= 0:
            raise AvatarSDKError("smoothing_ms must be >= 0, hysteresis in [0, 1), reset_after_ms > 0")
        return self
