"""Face detection with BlazeFace short-range, made robust: on LiteRT directly (:mod:`sdk_python.blazeface`,
the default for the short-range model) or through MediaPipe's Tasks ``FaceDetector``.

MediaPipe's graph breaks for good after one runtime error ("Graph has errors" on every later call),
so this wrapper (1) validates every image before MediaPipe sees it and (2) rebuilds the detector and
retries once after any runtime error.

The model: mediapipe >= 0.10.22 wheels ship no ``.tflite``. The bundle may carry one; otherwise
:func:`fetch_detector_model` takes ``face_detection_short_range.tflite`` (with the metadata the Tasks
API needs) out of the mediapipe 0.10.21 wheel, fetched with ``pip download`` (no install, no
dependency conflict) into ``~/.cache/swiftavatar/``. Nothing downloads implicitly at run time.
"""
from __future__ import annotations

import threading
import atexit
import weakref
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import contract
from .detector_models import fetch_model, find_model, resolve_model
from .errors import DetectorError
from .options import DETECTOR_RUNTIMES
from .result import KEYPOINT_NAMES, FaceBox, FaceDetection

MODEL_SHA256 = contract.detector("short").sha256   # the pins are the model contract's


def find_detector_model() -> Optional[Path]:
    """The short-range detector model if it is already on this machine (``$SWIFTAVATAR_FACE_DETECTOR`` or the
    cache)."""
    return find_model("short")


def fetch_detector_model(timeout_s: float = 300.0) -> Path:
    """Return the short-range face-detector model, fetching it once into the cache if needed (the SDK's one
    fetcher, :func:`sdk_python.detector_models.fetch_model`: ``pip download --no-deps`` of the pinned mediapipe
    wheel, the member checked against the contract's sha256).

    Raises:
        DetectorModelUnavailableError: pip or the package index is unreachable, or the file differs.
    """
    return fetch_model("short", timeout_s)


def resolve_detector_model(explicit: Union[str, Path, None] = None, from_bundle: Union[str, Path, None] = None) -> Path:
    """Pick the short-range model: explicit path, then the bundle's, then one already on this machine.

    Raises:
        DetectorModelUnavailableError: none found (with instructions; nothing is downloaded here).
    """
    return resolve_model("short", explicit, from_bundle)


def _close_quietly(det) -> None:
    from .native_logs import is_quiet, sdk_quiet, quiet_stderr
    try:
        with quiet_stderr(is_quiet() or sdk_quiet()):   # LiteRT logs "DestroyAccelerator" on fd 2
            det.close()
    except Exception:
        pass
    finally:  # a broken graph fails to close; keep mediapipe's __del__ from trying again
        try:
            det._handle = None
        except Exception:
            pass
        _GRAPHS.pop(id(det), None)


_LIVE: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()

# Every open MediaPipe graph, held strongly until closed here, and graphs whose wrapper was finalised.
# Why: MediaPipe 1.x closes a graph through one serial dispatcher whose executor holds a lock while it
# allocates; a graph finalised by the cyclic garbage collector (an estimator in a reference cycle, e.g.
# kept alive by an exception's traceback) runs close() at that allocation, in the same thread, and
# deadlocks. Held here, a graph is never cyclic garbage; a finalised wrapper only queues its graph,
# and queued graphs are closed at the next safe point (creating, using or closing a detector, exit).
_GRAPHS: dict[int, object] = {}
_PENDING_CLOSE: list = []


def _close_pending() -> None:
    while _PENDING_CLOSE:
        _close_quietly(_PENDING_CLOSE.pop())


@atexit.register
def _close_all() -> None:
    # MediaPipe's own finaliser fails noisily once the interpreter is shutting down: close first.
    for det in list(_LIVE):
        det.close()
    _close_pending()
    for graph in list(_GRAPHS.values()):
        _close_quietly(graph)


_MIRROR_NAMES = {"right_eye": "left_eye", "left_eye": "right_eye", "right_ear": "left_ear", "left_ear": "right_ear"}


def _mirror_face(face: FaceDetection, width: int) -> FaceDetection:
    """The detection as it appears in the horizontally flipped image (left and right keypoints swap)."""
    b = face.box
    return FaceDetection(box=FaceBox(width - b.x - b.width, b.y, b.width, b.height),
                         keypoints={_MIRROR_NAMES.get(n, n): (width - x, y) for n, (x, y) in face.keypoints.items()},
                         score=face.score)


#: :meth:`FaceDetector.refine` runs only when its window shows the face at least this many times larger
#: than the whole image did to the first pass.
MIN_REFINE_GAIN = 1.25


#: Where BlazeFace runs: ``litert`` (:mod:`sdk_python.blazeface`: the model on LiteRT with MediaPipe's pre- and
#: post-processing restated, ~0.65 ms faster a detection on 2 cores), ``mediapipe`` (the Tasks ``FaceDetector`` graph), ``auto``
#: (LiteRT for the short-range layout, MediaPipe for other models such as the full-range one).
RUNTIMES = DETECTOR_RUNTIMES


class FaceDetector:
    """BlazeFace with input validation: on LiteRT directly, or MediaPipe's Tasks ``FaceDetector`` with
    rebuild-on-error.

    Args:
        model_path: BlazeFace ``.tflite`` (with Tasks metadata for the MediaPipe runtime).
        min_confidence: Detections below this score are dropped.
        quiet: Hide what the native code writes to fd 2 while the model is built, warmed up and closed
            (``None``: :func:`sdk_python.native_logs.sdk_quiet`).
        runtime: One of :data:`RUNTIMES`; :attr:`runtime` says which one runs.

    Raises:
        DetectorError: the runtime is not installed or refuses the model.
    """

    def __init__(self, model_path: Union[str, Path], min_confidence: float = 0.5, quiet: Optional[bool] = None,
                 runtime: str = "auto"):
        from .native_logs import is_quiet, sdk_quiet
        if runtime not in RUNTIMES:
            raise DetectorError(f"detector runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        self.model_path = Path(model_path)
        self.min_confidence = float(min_confidence)
        self.quiet = is_quiet() or (sdk_quiet() if quiet is None else quiet)
        self.rebuilds = 0
        self._lock = threading.Lock()
        self._det = None
        self._lite = self._build_lite(runtime) if runtime != "mediapipe" else None
        #: ``"litert"`` or ``"mediapipe"``: where this detector runs.
        self.runtime = "litert" if self._lite is not None else "mediapipe"
        if self._lite is None:
            _close_pending()
            self._det = self._build()
            _GRAPHS[id(self._det)] = self._det
            _LIVE.add(self)
        self._warm_up()

    def _build_lite(self, runtime: str):
        """The LiteRT detector; ``None`` under ``auto`` when this model or machine needs MediaPipe."""
        from .blazeface import BlazeFaceLite
        from .native_logs import quiet_stderr
        try:
            with quiet_stderr(self.quiet):   # LiteRT logs its delegate on fd 2
                return BlazeFaceLite(self.model_path, self.min_confidence)
        except DetectorError:
            if runtime == "litert":
                raise
            return None

    def _warm_up(self) -> None:
        """One detection on a blank frame, quietly: the graph logs on its first run (and the first real frame
        would pay the set-up time)."""
        from .native_logs import quiet_stderr
        with quiet_stderr(self.quiet):
            self.detect(np.full((128, 128, 3), 128, np.uint8))

    def _build(self):
        from .native_logs import import_mediapipe, quiet_stderr
        try:
            import_mediapipe()  # lazy: heavy, and only needed with detection on; keeps TensorFlow out
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise DetectorError(f"mediapipe is not installed ({exc}): `pip install mediapipe`, or use "
                                "detection='none' for pre-framed images") from None
        try:
            opts = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(self.model_path)),
                                              min_detection_confidence=self.min_confidence)
            with quiet_stderr(self.quiet):  # LiteRT prints its set-up to fd 2
                return vision.FaceDetector.create_from_options(opts)
        except Exception as exc:  # mediapipe raises RuntimeError/ValueError with C++ status text
            raise DetectorError(f"mediapipe cannot load the face detector {self.model_path} ({exc}); it needs a BlazeFace "
                                "model with Tasks metadata, e.g. face_detection_short_range.tflite") from None

    @staticmethod
    def validate(image: np.ndarray) -> None:
        """Raise ``DetectorError`` for anything MediaPipe would choke on (callers normally pass the
        output of :func:`sdk_python.image_input.load_image`, which already guarantees this)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DetectorError("the detector needs a uint8 [H, W, 3] RGB array; convert with sdk_python.load_image")
        if image.shape[0] < 2 or image.shape[1] < 2:
            raise DetectorError(f"the detector needs an image of at least 2x2 pixels, got {image.shape[1]}x{image.shape[0]}")

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Detect faces.

        Args:
            image: ``uint8 [H, W, 3]`` RGB.

        Returns:
            Detections with boxes and keypoints in pixels, highest score first.

        Raises:
            DetectorError: invalid input, or MediaPipe failed twice (with a rebuild in between).
        """
        self.validate(image)
        if self.runtime == "litert":
            if self._lite is None:
                raise DetectorError("the face detector is closed: create a new one")
            return self._lite.detect(image)
        if _PENDING_CLOSE:
            _close_pending()
        from .native_logs import import_mediapipe, quiet_stderr
        mp = import_mediapipe()
        frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        with self._lock, quiet_stderr():  # LiteRT warns on fd 2 at the first call (after silence_native_logs)
            try:
                raw = self._det.detect(frame)
            except Exception as first:  # the graph is now broken: rebuild, retry once
                self._rebuild()
                try:
                    raw = self._det.detect(frame)
                except Exception as second:
                    self._rebuild()
                    raise DetectorError(f"MediaPipe face detection failed ({second}; before the rebuild: {first}); "
                                        "check the image, the detector has been rebuilt for the next call") from None
        h, w = image.shape[:2]
        out = []
        for d in raw.detections:
            b = d.bounding_box
            score = float(d.categories[0].score) if d.categories else 0.0
            kps = {name: (float(k.x) * w, float(k.y) * h) for name, k in zip(KEYPOINT_NAMES, d.keypoints or [])}
            out.append(FaceDetection(box=FaceBox(float(b.origin_x), float(b.origin_y), float(b.width), float(b.height)),
                                     keypoints=kps, score=score))
        out.sort(key=lambda f: -f.score)
        return out

    def refine(self, image: np.ndarray, face: FaceDetection, context: float = 2.2,
               mirror_average: bool = False) -> FaceDetection:
        """Second pass on a square window around ``face`` (``context`` x its box), so the keypoints
        come from the face at the same relative scale wherever and however large it was in the image:
        BlazeFace sees images at 128x128, and small faces otherwise get coarse keypoints.

        Skipped (``face`` is returned) when the image is less than :data:`MIN_REFINE_GAIN` times the
        window: the first pass then saw the face at nearly the same scale, and a second detection would
        cost ~2 ms for no finer keypoints (a selfie filling the frame).

        ``mirror_average`` runs the pass on the mirrored image too and averages the two keypoint sets
        (left and right swapped back): one more detection, and the aligned crop moves about 40 % less
        under small jitter (``benchmarks/results/sdk_stability.md``).

        Returns:
            The refined detection in ``image`` pixels (the box of the first pass if the second misses).
        """
        if not mirror_average and max(image.shape[:2]) < MIN_REFINE_GAIN * context * max(face.box.width, face.box.height):
            return face   # the first pass already saw this face at nearly the window's scale
        once = self._refine_once(image, face, context)
        if not mirror_average:
            return once
        w = image.shape[1]
        other = _mirror_face(self._refine_once(np.ascontiguousarray(image[:, ::-1]), _mirror_face(face, w), context), w)
        kps = {n: ((x + other.keypoints[n][0]) / 2, (y + other.keypoints[n][1]) / 2)
               for n, (x, y) in once.keypoints.items() if n in other.keypoints}
        return FaceDetection(box=face.box, keypoints=kps, score=face.score)

    def _refine_once(self, image: np.ndarray, face: FaceDetection, context: float) -> FaceDetection:
        b = face.box
        side = int(round(context * max(b.width, b.height)))
        if side < 8:
            return face
        cx, cy = b.x + b.width / 2, b.y + b.height / 2
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        h, w = image.shape[:2]
        win = image[max(y0, 0):min(y0 + side, h), max(x0, 0):min(x0 + side, w)]
        pad = ((max(0, -y0), max(0, y0 + side - h)), (max(0, -x0), max(0, x0 + side - w)), (0, 0))
        if any(p for pr in pad[:2] for p in pr):
            win = np.pad(win, pad, mode="edge")
        if win.shape[0] > 256:  # the detector works at 128 px: no need to send more
            from PIL import Image
            win = np.asarray(Image.fromarray(np.ascontiguousarray(win)).resize((256, 256), Image.BILINEAR))
        k = side / win.shape[0]
        found = self.detect(np.ascontiguousarray(win))
        if not found:
            return face
        mid = win.shape[0] / 2
        best = min(found, key=lambda f: (f.box.x + f.box.width / 2 - mid) ** 2 + (f.box.y + f.box.height / 2 - mid) ** 2)
        kps = {n: (x * k + x0, y * k + y0) for n, (x, y) in best.keypoints.items()}
        return FaceDetection(box=face.box, keypoints=kps, score=face.score)

    def _rebuild(self) -> None:
        self.rebuilds += 1
        old, self._det = self._det, None
        _close_quietly(old)
        self._det = self._build()
        _GRAPHS[id(self._det)] = self._det

    def close(self) -> None:
        """Release the model (idempotent)."""
        lite, self._lite = getattr(self, "_lite", None), None
        if lite is not None:
            lite.close()
        det, self._det = getattr(self, "_det", None), None
        if det is not None:
            _close_quietly(det)
        _close_pending()

    def __del__(self):
        # Possibly inside the garbage collector, at any allocation: never call MediaPipe from here
        # (see _GRAPHS); queue the graph for the next safe point.
        det, self._det = getattr(self, "_det", None), None
        if det is not None:
            _PENDING_CLOSE.append(det)
