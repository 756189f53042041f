"""``AvatarEstimator``: image -> face detection -> aligned crop -> estimator backend -> avatar vector.

Usage::

    from sdk_python import AvatarEstimator, AvatarEstimatorOptions, RunningMode

    with AvatarEstimator.create_from_bundle("alter.swiftavatar") as est:
        result = est.estimate("selfie.jpg")
        print(result.vector)                    # ready for the engine's render()

    opts = AvatarEstimatorOptions(bundle_path="alter.swiftavatar", running_mode=RunningMode.VIDEO,
                                  color_order="bgr")
    with AvatarEstimator.create_from_options(opts) as est:
        for ts, frame in frames:                # e.g. OpenCV frames
            result = est.estimate_for_video(frame, ts)
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .backends import create_backend
from .decode import SchemaDecoder
from .detector import FaceDetector, resolve_detector_model
from .detector_models import resolve_model
from .face_finder import FaceFinder
from .face_mesh import Roi, alignment_keypoints
from .face_presence import MIN_PRESENCE
from .face_tracker import FaceTracker
from .errors import (AvatarSDKError, EstimatorClosedError, FaceTooSmallError, MultipleFacesError, NoFaceError,
                     RunningModeError, TimestampError)
from .framing import CANONICAL_KEYPOINTS, align, frame_whole
from .image_input import carried_color_order, load_image
from .model_source import open_model_source
from .native_logs import quiet_stderr, sdk_quiet
from .options import AvatarEstimatorOptions, Detection, DetectorMode, MultipleFacePolicy, RunningMode
from .quality import assess, color_parameters, is_grayscale
from .result import AvatarEstimatorResult, AvatarFace, FaceBox, FaceDetection, Timings
from .smoothing import VideoSmoother


class InferenceError(AvatarSDKError):
    """The estimator runtime failed on a valid input (a damaged or mismatched model file)."""


def _detector_model_resolver(options: AvatarEstimatorOptions, source: Any):
    """``kind -> model path`` for :class:`FaceFinder`, from the options and the bundle (resolved lazily)."""
    short_explicit, short_bundled = options.detector_model_path, source.detector_model
    explicit = {"full": options.full_range_model_path, "mesh": options.face_mesh_model_path}
    bundled = {"full": getattr(source, "full_range_detector", None), "mesh": getattr(source, "face_mesh", None)}

    def model_for(kind: str) -> Path:
        if kind == "short":
            return resolve_detector_model(short_explicit, short_bundled)
        return resolve_model(kind, explicit[kind], bundled[kind])
    return model_for


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class AvatarEstimator:
    """Estimates avatar vectors from face images. Create with :meth:`create_from_options` or
    :meth:`create_from_bundle`; use as a context manager or call :meth:`close`."""

    def __init__(self, options: AvatarEstimatorOptions):
        """Use the ``create_from_*`` factories; this runs the same steps."""
        self.options = options.validate()
        self._closed = False
        self.finder: Optional[FaceFinder] = None
        self.tracker: Optional[FaceTracker] = None
        self.backend = None
        #: a library prints nothing of its own: the native runtimes' set-up lines are hidden (native_logs.py)
        self._quiet = sdk_quiet(options.native_logs)
        with quiet_stderr(self._quiet):
            self._load(options)

    def _load(self, options: AvatarEstimatorOptions) -> None:
        self.source = open_model_source(options.bundle_path)
        self.decoder = SchemaDecoder(self.source.metadata["schema"], self.source.temperatures)
        self.input_size = self.source.input_size
        mean, std = np.asarray(self.source.mean, np.float64), np.asarray(self.source.std, np.float64)
        # (pixel / 255 - mean) / std as one multiply-add per channel
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._offset = (-mean / std).astype(np.float32)
        self.backend = create_backend(options.backend, self.source.files, self.source.output_order,
                                      options.num_threads, options.precision,
                                      normalization=(self.source.mean, self.source.std))
        missing = [h for h in self.decoder.head_names
                   if h not in {self.source.head_of(n) for n in self.source.output_order}]
        if missing:
            from .errors import BundleError
            raise BundleError(f"{self.source.origin}: no model output for {missing}; re-export the bundle")
        if options.detection == Detection.MEDIAPIPE:
            # a resolver that holds no reference to self: an estimator dropped without close() must not sit
            # in a reference cycle, or its MediaPipe graphs are closed by the garbage collector at any
            # allocation, which can deadlock inside MediaPipe's dispatcher lock
            video = options.running_mode == RunningMode.VIDEO
            track = video and options.tracking and options.multiple_faces == MultipleFacePolicy.LARGEST
            self.finder = FaceFinder(self._detector_mode(), _detector_model_resolver(options, self.source),
                                     options.min_face_confidence,
                                     checks=options.face_checks, tile_size=options.tile_size,
                                     num_threads=options.num_threads, quiet=self._quiet,
                                     mesh=options.keypoint_source == "mesh" or track,
                                     runtime=options.detector_runtime)
            if track and self.finder.mesh is not None:
                self.tracker = FaceTracker(self.finder.mesh, options.redetect_every)
            # without tracking, a face accepted in the previous frame skips the presence test; with it, detection
            # frames are rare and their presence run gives the landmarks tracking starts from
            self.finder.track = video and self.tracker is None
        self._color_params = color_parameters(self.decoder.schema)
        self._smoother = VideoSmoother(options.smoothing_ms, options.hysteresis, options.reset_after_ms)
        self._last_ts: Optional[int] = None
        #: is_grayscale of the frame tracking started from: a stream does not change colour mode between frames
        #: (0.4 ms of a tracked 224 px frame); measured again at every detection (the safety net included)
        self._stream_gray: Optional[bool] = None
        # warm-up: runtimes log (and allocate) on their first run; do both now, not on the first frame
        self._run(np.zeros((1, 3, self.input_size, self.input_size), np.float32))

    def _detector_model(self, kind: str) -> Path:
        return _detector_model_resolver(self.options, self.source)(kind)

    def _detector_mode(self) -> str:
        mode = DetectorMode(self.options.detector).value
        if mode == "auto":
            try:
                self._detector_model("full")
            except AvatarSDKError as exc:  # auto without the full-range model: still works for selfies
                import warnings
                warnings.warn(f"detector='auto' runs short-range only: {exc}", stacklevel=3)
                return "short"
        return mode

    @property
    def detector(self) -> Optional[FaceDetector]:
        """The detector used for keypoints (short-range when loaded); ``None`` with ``detection='none'``."""
        return self.finder.primary if self.finder is not None else None

    # ----- factories ------------------------------------------------------------------------------
    @classmethod
    def create_from_options(cls, options: AvatarEstimatorOptions) -> "AvatarEstimator":
        """Create an estimator.

        Args:
            options: See :class:`AvatarEstimatorOptions`.

        Returns:
            A ready estimator (models loaded, detector built).

        Raises:
            BundleError / BundleVersionError: the bundle cannot be used by this SDK.
            BackendUnavailableError: the backend cannot run here (message lists what can).
            DetectorModelUnavailableError: no face-detector model (message says how to get one).
            AvatarSDKError: invalid options.
        """
        est = cls.__new__(cls)
        try:
            est.__init__(options)
        except BaseException:
            est.close()
            raise
        return est

    @classmethod
    def create_from_bundle(cls, bundle_path: Union[str, Path], **kwargs: Any) -> "AvatarEstimator":
        """Shortcut: ``create_from_options(AvatarEstimatorOptions(bundle_path, **kwargs))``."""
        return cls.create_from_options(AvatarEstimatorOptions(bundle_path=bundle_path, **kwargs))

    # ----- public API -----------------------------------------------------------------------------
    @property
    def schema(self) -> dict:
        """The engine schema (JSON dict) the estimates refer to."""
        return self.decoder.schema

    @property
    def backend_name(self) -> str:
        return self.backend.name if self.backend else ""

    @property
    def calibrated(self) -> bool:
        """Whether discrete confidences are temperature-scaled by the exporter's calibration (see
        ``calibration.md`` beside the export); ``False``: they are the raw softmax."""
        return self.decoder.calibrated

    def estimate(self, image: Any, color_order: Optional[str] = None) -> AvatarEstimatorResult:
        """Estimate the avatar for one image (IMAGE mode).

        Args:
            image: numpy array (``color_order`` needed for 3/4 channels, except the array
                :func:`sdk_python.load_image` returns, which carries its own), PIL image, path or bytes.
            color_order: ``"rgb"`` or ``"bgr"`` for numpy inputs; defaults to ``options.color_order``.

        Returns:
            The result for the largest face (or every face with ``MultipleFacePolicy.ALL``).

        Raises:
            InvalidImageError (and subclasses): the input is not a usable image.
            NoFaceError / MultipleFacesError / FaceTooSmallError: the faces in it do not qualify.
            RunningModeError: the estimator is in VIDEO mode.
            EstimatorClosedError: after :meth:`close`.
        """
        self._check_open()
        if self.options.running_mode != RunningMode.IMAGE:
            raise RunningModeError("this estimator runs in VIDEO mode: call estimate_for_video(frame, timestamp_ms), "
                                   "or create one with running_mode=RunningMode.IMAGE")
        return self._process(image, color_order, None)

    def estimate_for_video(self, frame: Any, timestamp_ms: int, color_order: Optional[str] = None) -> AvatarEstimatorResult:
        """Estimate the avatar for one video frame, smoothed over time (VIDEO mode).

        Args:
            frame: As for :meth:`estimate`.
            timestamp_ms: Integer milliseconds, strictly increasing from call to call.
            color_order: As for :meth:`estimate`.

        Returns:
            The smoothed result (continuous values low-pass filtered, discrete choices with hysteresis).

        Raises:
            TimestampError: the timestamp is not an integer or not larger than the previous one.
            Everything :meth:`estimate` raises; a lost face also restarts the smoothing.
        """
        self._check_open()
        if self.options.running_mode != RunningMode.VIDEO:
            raise RunningModeError("this estimator runs in IMAGE mode: call estimate(image), or create one with "
                                   "running_mode=RunningMode.VIDEO")
        if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, (int, np.integer)):
            raise TimestampError(f"timestamp_ms must be an integer number of milliseconds, got {timestamp_ms!r}")
        ts = int(timestamp_ms)
        if self._last_ts is not None and ts <= self._last_ts:
            raise TimestampError(f"timestamp_ms {ts} is not after the previous frame's {self._last_ts}: video "
                                 "timestamps must increase strictly (use the frame's capture time)")
        if self.tracker is not None and self._last_ts is not None and ts - self._last_ts > self.options.reset_after_ms:
            self.tracker.reset()   # a gap: the face may be anywhere now
        self._last_ts = ts
        try:
            return self._process(frame, color_order, ts)
        except (NoFaceError, FaceTooSmallError, MultipleFacesError):
            self._smoother.reset()
            if self.tracker is not None:
                self.tracker.reset()
            raise
        except AvatarSDKError:
            if self.tracker is not None:
                self.tracker.reset()
            raise

    def close(self) -> None:
        """Release the detector and the runtime (idempotent)."""
        self._closed = True
        self.tracker = None
        finder, self.finder = getattr(self, "finder", None), None
        backend, self.backend = getattr(self, "backend", None), None
        with quiet_stderr(getattr(self, "_quiet", False)):   # LiteRT logs as it tears down
            if finder is not None:
                finder.close()
            if backend is not None:
                backend.close()

    def __enter__(self) -> "AvatarEstimator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----- pipeline -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EstimatorClosedError("the estimator is closed: create a new one")

    def _faces(self, rgb: np.ndarray) -> tuple[list[FaceDetection], int, tuple[str, ...], dict[str, float]]:
        """The faces to estimate (largest first), how many faces the image holds, the detectors run, and the
        milliseconds spent (``detection``, ``checks``, ``landmarks``)."""
        h, w = rgb.shape[:2]
        if self.finder is None:
            kps = {k: (x * w, y * h) for k, (x, y) in CANONICAL_KEYPOINTS.items()}
            return [FaceDetection(FaceBox(0.0, 0.0, float(w), float(h)), kps, 1.0)], 1, (), {}
        t0 = time.perf_counter()
        found = self.finder.find(rgb)
        checks, mesh = found.ms.get("checks", 0.0), found.ms.get("mesh", 0.0)
        ms = {"detection": _ms(t0) - checks - mesh, "checks": checks, "landmarks": mesh}
        faces, ran = found.faces, tuple(found.detectors)
        if not faces:
            n_rej = len(found.rejected)
            extra = (f"; {n_rej} face-like pattern(s) failed the human-face checks (keypoint layout, skin colour, "
                     "face-mesh presence)" if n_rej else "")
            raise NoFaceError(f"no face found in the {w}x{h} image (min_face_confidence "
                              f"{self.options.min_face_confidence}, detector {'+'.join(ran)}{extra}): use a frontal, "
                              "well-lit photo of a person's face (detector='full' finds faces farther away); for "
                              "already-framed avatar images use detection='none'", rejected=n_rej)
        faces.sort(key=lambda f: -f.box.area)
        count = len(faces)
        policy = self.options.multiple_faces
        if count > 1 and policy == MultipleFacePolicy.ERROR:
            raise MultipleFacesError(f"{count} faces found: crop the image to one person, or use "
                                     "multiple_faces='largest' or 'all'", count=count)
        if policy != MultipleFacePolicy.ALL:
            faces = faces[:1]
        return self._big_enough(faces, count), count, ran, ms

    def _big_enough(self, faces: list[FaceDetection], count: int) -> list[FaceDetection]:
        big = [f for f in faces if min(f.box.width, f.box.height) >= self.options.min_face_size]
        if not big:
            size = min(faces[0].box.width, faces[0].box.height)
            raise FaceTooSmallError(f"found a face, but it is only {size:.0f} px (below min_face_size "
                                    f"{self.options.min_face_size}): move closer, or use a higher-resolution photo",
                                    size_px=float(size), min_size_px=self.options.min_face_size, count=count)
        return big

    def _aligned_face(self, rgb: np.ndarray, face: FaceDetection, ms: dict[str, float],
                      settle: bool = False) -> FaceDetection:
        """``face`` with the keypoints the crop is aligned on: the face mesh's (run here when the presence test
        did not), else the detector's, refined as the options say. Adds the time to ``ms``. ``settle`` (a VIDEO
        detection that tracking continues from) runs the mesh once more on the region its landmarks give, as
        the next, tracked frame will: the crop then does not jump when tracking takes over."""
        mesh = self.finder.mesh if self.finder is not None else None
        if (self.options.keypoint_source == "mesh" or settle) and mesh is not None:
            t0 = time.perf_counter()
            if face.landmarks is None:
                m = mesh.run(rgb, Roi.from_detection(face))
                if m is not None:
                    face = dataclasses.replace(face, landmarks=m.points, presence=m.presence)
            if face.landmarks is not None and settle:
                m = mesh.run(rgb, Roi.from_landmarks(face.landmarks))
                if m is not None and m.presence >= MIN_PRESENCE:
                    face = dataclasses.replace(face, landmarks=m.points, presence=m.presence)
            if face.landmarks is not None:
                kps = alignment_keypoints(face.landmarks)
                if self.options.mirror_tta:
                    kps = self._mirror_averaged(rgb, face, kps, mesh)
                face = dataclasses.replace(face, keypoints={**face.keypoints, **kps})
            ms["landmarks"] = ms.get("landmarks", 0.0) + _ms(t0)
            if face.landmarks is not None:
                return face
        if self.options.refine_keypoints:   # the second detection pass: counted as crop time
            t0 = time.perf_counter()
            face = self.detector.refine(rgb, face, mirror_average=self.options.mirror_tta)
            ms["crop"] = ms.get("crop", 0.0) + _ms(t0)
        return face

    @staticmethod
    def _mirror_averaged(rgb: np.ndarray, face: FaceDetection, kps: dict, mesh: Any) -> dict:
        """Mirror TTA for the mesh keypoints: the mesh on the mirrored image too, its keypoints mapped back
        (x mirrored, left and right swapped) and averaged with ``kps``."""
        w = rgb.shape[1]
        roi = Roi.from_landmarks(face.landmarks)
        mirrored = mesh.run(np.ascontiguousarray(rgb[:, ::-1]), Roi(w - roi.cx, roi.cy, roi.side, -roi.theta))
        if mirrored is None:
            return kps
        other = alignment_keypoints(mirrored.points)
        swap = {"right_eye": "left_eye", "left_eye": "right_eye"}
        back = {swap.get(n, n): (w - x, y) for n, (x, y) in other.items()}
        return {n: ((x + back[n][0]) / 2, (y + back[n][1]) / 2) for n, (x, y) in kps.items()}

    def _process(self, image: Any, color_order: Optional[str], ts: Optional[int]) -> AvatarEstimatorResult:
        t_start = time.perf_counter()
        rgb = self._load_image(image, color_order)
        t_load = _ms(t_start)
        faces, tracked, count, ran, ms = None, False, 1, (), {}
        if self.tracker is not None and ts is not None:
            t0 = time.perf_counter()
            face = self.tracker.follow(rgb)
            if face is not None and self.options.mirror_tta:
                face = dataclasses.replace(face, keypoints=self._mirror_averaged(rgb, face, face.keypoints,
                                                                                 self.tracker.mesh))
            ms["landmarks"] = _ms(t0)
            if face is not None:
                faces, tracked = self._big_enough([face], 1), True
        if faces is None:
            faces, count, ran, found_ms = self._faces(rgb)
            for k, v in found_ms.items():
                ms[k] = ms.get(k, 0.0) + v
        gray = None
        t_inf = t_dec = 0.0
        avatars = []
        S = self.input_size
        for i, face in enumerate(faces):
            quality = None
            if self.finder is None:
                t0 = time.perf_counter()
                crop = frame_whole(rgb, S)
            else:
                if not tracked:
                    follow = self.tracker is not None and i == 0
                    face = self._aligned_face(rgb, face, ms, settle=follow)
                    if follow and face.landmarks is not None:
                        self.tracker.start(face)
                t0 = time.perf_counter()
                crop = align(rgb, face.keypoints, S)
                if self.options.quality:
                    if gray is None:
                        gray = self._stream_gray if tracked and self._stream_gray is not None else is_grayscale(rgb)
                        self._stream_gray = gray if ts is not None else None
                    quality = assess(rgb, face, self._color_params, grayscale=gray)
            x = self._normalise(crop)
            ms["crop"] = ms.get("crop", 0.0) + _ms(t0)
            t0 = time.perf_counter()
            outputs = self._run(x)
            mirrored = self._run(np.ascontiguousarray(x[..., ::-1])) if self.options.mirror_tta else None
            t_inf += _ms(t0)
            t0 = time.perf_counter()
            raw = self.decoder.raw({self.source.head_of(n): v for n, v in outputs.items()})
            spread = None
            if mirrored is not None:
                raw, spread = self.decoder.merge_mirrored(
                    raw, self.decoder.raw({self.source.head_of(n): v for n, v in mirrored.items()}))
            choices = None
            if ts is not None and i == 0:
                raw, choices = self._smoother.update(raw, ts)
            params, vector = self.decoder.parameters(raw, choices, spread)
            avatars.append(AvatarFace(face=face, parameters=params, vector=vector, quality=quality))
            t_dec += _ms(t0)
        timings = Timings(load_ms=t_load, detection_ms=ms.get("detection", 0.0), checks_ms=ms.get("checks", 0.0),
                          landmarks_ms=ms.get("landmarks", 0.0), crop_ms=ms.get("crop", 0.0), inference_ms=t_inf,
                          decode_ms=t_dec, total_ms=_ms(t_start))
        return AvatarEstimatorResult(avatars=tuple(avatars), timings=timings, timestamp_ms=ts,
                                     extras={"backend": self.backend.name, "input_size": S,
                                             "mirror_tta": self.options.mirror_tta},
                                     faces_found=count, detectors=ran, tracked=tracked)

    def _normalise(self, crop: np.ndarray) -> np.ndarray:
        """``uint8 [S, S, 3]`` crop -> the model's normalised ``float32 [1, 3, S, S]`` input (plane by plane: ~8x
        faster at 224 px than one broadcast expression)."""
        x = np.empty((1, 3, *crop.shape[:2]), np.float32)
        for c in range(3):
            np.multiply(crop[:, :, c], self._scale[c], out=x[0, c], dtype=np.float32)
            x[0, c] += self._offset[c]
        return x

    def _load_image(self, image: Any, color_order: Optional[str]) -> np.ndarray:
        # an image that states its order (load_image's) outranks the options' default, not the call's argument
        default = None if carried_color_order(image) is not None else self.options.color_order
        return np.asarray(load_image(image, color_order or default))

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return self.backend.run(x)
        except AvatarSDKError:
            raise
        except Exception as exc:
            raise InferenceError(f"the {self.backend.name} runtime failed on a valid input ({exc}); the model "
                                 "file may be damaged or mismatched: re-export the bundle") from None

    def crop(self, image: Any, color_order: Optional[str] = None) -> np.ndarray:
        """The aligned crop the estimator would see for the largest face (for debugging and data writers)."""
        self._check_open()
        rgb = self._load_image(image, color_order)
        face = self._faces(rgb)[0][0]
        if self.finder is None:
            return frame_whole(rgb, self.input_size)
        return align(rgb, self._aligned_face(rgb, face, {}).keypoints, self.input_size)
