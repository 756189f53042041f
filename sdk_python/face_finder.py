"""Finding the faces in one image: which BlazeFace model(s) to run, and which detections to believe.

Modes (:class:`~sdk_python.options.DetectorMode`):

* ``short``: the short-range model only (selfies; ~2 ms);
* ``full``: the full-range model only (faces far from the camera; ~2-4x slower);
* ``auto``: short first; the full-range model too when the short one keeps nothing or the image is
  large (longer side >= :data:`LARGE_SIDE` px, where faces small in the frame are likely). Detections
  of both are merged (overlapping boxes: the short-range one, whose keypoints are finer, wins).

On a large image, and in ``auto`` on any image larger than a tile where the short-range model kept
nothing, the full-range model also runs on half-overlapping square tiles of ``tile_size`` px
(default :data:`TILE_SIZE`): it sees its input at 192 px, so on a whole 1280 px photo a face needs
about 120 px to be found; on 640 px tiles about 60 px, on 320 px tiles about 40 px (measured on the
group scene of ``python -m benchmarks detection``; each halving of the tile costs ~4x the time).

Every detection must clear ``min_confidence``, :func:`sdk_python.face_check.rejection` (keypoint
geometry, skin colour) and the face-mesh presence test of :mod:`sdk_python.face_presence` (when its model
is at hand); what was dropped is counted so a caller can say "found something, not a face".
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from .detector import FaceDetector
from .errors import AvatarSDKError
from .face_check import rejection
from .face_mesh import Roi
from .face_presence import MIN_PRESENCE, FacePresence
from .result import FaceBox, FaceDetection

LARGE_SIDE = 1024
TILE_SIZE = 640
MODES = ("short", "full", "auto")


@dataclass
class FoundFaces:
    """What :meth:`FaceFinder.find` saw.

    Attributes:
        faces: Accepted detections, highest score first.
        rejected: ``(detection, reasons)`` for detections above the score threshold that failed the checks.
        detectors: Models run, in order (``"short"``, ``"full"``).
        ms: Milliseconds per model run (``"short"``, ``"full"``), and for the layout/skin ``"checks"`` and the
            face-mesh ``"mesh"`` runs.
    """

    faces: list[FaceDetection]
    rejected: list[tuple[FaceDetection, list[str]]] = field(default_factory=list)
    detectors: list[str] = field(default_factory=list)
    ms: dict[str, float] = field(default_factory=dict)


def tiles(h: int, w: int, side: int) -> list[tuple[int, int]]:
    """Top-left corners of half-overlapping ``side`` squares covering an ``h`` x ``w`` image (a face up
    to ``side / 2`` wide lies wholly inside at least one)."""
    def starts(n: int) -> list[int]:
        if n <= side:
            return [0]
        out = list(range(0, n - side + 1, side // 2))
        if out[-1] + side < n:
            out.append(n - side)
        return out
    return [(x, y) for y in starts(h) for x in starts(w)]


def iou(a: FaceDetection, b: FaceDetection) -> float:
    ax1, ay1 = a.box.x + a.box.width, a.box.y + a.box.height
    bx1, by1 = b.box.x + b.box.width, b.box.y + b.box.height
    iw = max(0.0, min(ax1, bx1) - max(a.box.x, b.box.x))
    ih = max(0.0, min(ay1, by1) - max(a.box.y, b.box.y))
    inter = iw * ih
    union = a.box.area + b.box.area - inter
    return inter / union if union > 0 else 0.0


class FaceFinder:
    """One or two :class:`FaceDetector` s behind a mode, with the human-face checks.

    Args:
        mode: ``"short"``, ``"full"`` or ``"auto"``.
        model_for: ``kind -> Path`` of the model (called lazily: ``auto`` loads the full-range model only
            when an image first needs it).
        min_confidence: Score threshold for both models.
        checks: Apply the geometry/skin checks and the face-mesh presence test (``model_for("mesh")``;
            without that model a warning, and :attr:`presence_unavailable` says why). Off: every detection
            above the threshold counts, the behaviour before the checks existed. An accepted face that the
            face mesh looked at carries its landmarks (:attr:`FaceDetection.landmarks`).
        mesh: Load the face-mesh model even with ``checks`` off (the estimator aligns on its landmarks and
            tracks with it); :attr:`mesh` is ``None`` when it cannot be had.
        large_side: Images whose longer side reaches this get the full-range pass (auto) and tiles.
        tile_size: Side of the full-range model's tiles on large images (0: no tiles).
        num_threads: Threads of the face-mesh model's LiteRT interpreter.
        quiet: Hide the native libraries' set-up lines (see :func:`sdk_python.native_logs.sdk_quiet`).
        runtime: Where the detectors run (:data:`sdk_python.detector.RUNTIMES`).
    """

    def __init__(self, mode: str, model_for: Callable[[str], Union[str, Path]], min_confidence: float = 0.6,
                 checks: bool = True, large_side: int = LARGE_SIDE, tile_size: int = TILE_SIZE, num_threads: int = 1,
                 quiet: Optional[bool] = None, mesh: bool = False, runtime: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"detector mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode = mode
        self.runtime = runtime
        self.tile_size = int(tile_size)
        self.min_confidence = float(min_confidence)
        self.checks = checks
        self.large_side = large_side
        self._model_for = model_for
        self.quiet = quiet
        self._detectors: dict[str, FaceDetector] = {}
        self.presence: Optional[FacePresence] = None
        #: Video: a face overlapping one accepted in the previous frame keeps its presence verdict, so the
        #: face-mesh model runs when a face appears, not on every frame (IMAGE mode: every image is new).
        self.track = False
        self._accepted: list[FaceDetection] = []
        #: Why the face-mesh presence check does not run (``None``: it runs, or checks are off).
        self.presence_unavailable: Optional[str] = None
        if mode in ("short", "auto"):
            self.detector("short")
        else:
            self.detector("full")
        if checks or mesh:
            try:
                self.presence = FacePresence(model_for("mesh"), num_threads, quiet=quiet)
            except AvatarSDKError as exc:   # still useful without it: geometry and skin checks remain
                self.presence_unavailable = str(exc)
                if checks:
                    warnings.warn(f"face checks run without the face-mesh presence test, so drawn animals may pass "
                                  f"as faces (and crops align on the detector's keypoints, VIDEO mode detects every "
                                  f"frame): {exc}", stacklevel=3)

    @property
    def mesh(self) -> Optional[FacePresence]:
        """The face-mesh model (presence test, landmarks), or ``None`` when it is not loaded."""
        return self.presence

    def detector(self, kind: str) -> FaceDetector:
        """The ``kind`` detector, built on first use (raises ``DetectorModelUnavailableError``)."""
        det = self._detectors.get(kind)
        if det is None:
            # the detector's own floor sits below the threshold so rejected candidates can be reported
            det = FaceDetector(self._model_for(kind), min(self.min_confidence, 0.5), quiet=self.quiet,
                               runtime=self.runtime)
            self._detectors[kind] = det
        return det

    @property
    def primary(self) -> FaceDetector:
        """The detector used for the keypoint-refining second pass (short-range when it is loaded)."""
        return self._detectors.get("short") or self._detectors["full"]

    def _detect(self, kind: str, image: np.ndarray, searching: bool = False) -> list[FaceDetection]:
        """Whole image, plus (full-range, on a large image or ``searching`` one where nothing was found yet)
        every half-overlapping tile, in image pixels."""
        det = self.detector(kind)
        found = [f for f in det.detect(image) if f.score >= self.min_confidence]
        h, w = image.shape[:2]
        T = self.tile_size
        if kind != "full" or T <= 0 or max(h, w) <= T or (max(h, w) < self.large_side and not searching):
            return found
        for x, y in tiles(h, w, T):
            sub = np.ascontiguousarray(image[y:y + T, x:x + T])
            for f in det.detect(sub):
                if f.score < self.min_confidence:
                    continue
                g = FaceDetection(FaceBox(f.box.x + x, f.box.y + y, f.box.width, f.box.height),
                                  {n: (a + x, b + y) for n, (a, b) in f.keypoints.items()}, f.score)
                if all(iou(g, o) < 0.3 for o in found):
                    found.append(g)
        return found

    def _run(self, kind: str, image: np.ndarray, out: FoundFaces, searching: bool = False) -> list[FaceDetection]:
        t0 = time.perf_counter()
        found = self._detect(kind, image, searching)
        out.ms[kind] = (time.perf_counter() - t0) * 1000.0
        out.detectors.append(kind)
        kept: list[FaceDetection] = []
        for f in sorted(found, key=lambda f: -f.score):
            if any(iou(f, g) >= 0.3 for g in kept):
                continue   # the same face again (a tile, a weaker box): nothing new to check
            why, f = self._reject(image, f, out)
            if why:
                out.rejected.append((f, why))
            else:
                kept.append(f)
        return kept

    def _reject(self, image: np.ndarray, face: FaceDetection, out: FoundFaces) -> tuple[list[str], FaceDetection]:
        """Why ``face`` is not a human face (geometry and skin first, cheap; then the face-mesh presence), and the
        face with the face mesh's landmarks attached when it ran."""
        if not self.checks:
            return [], face
        t0 = time.perf_counter()
        why = rejection(image, face)
        t1 = time.perf_counter()
        out.ms["checks"] = out.ms.get("checks", 0.0) + (t1 - t0) * 1000.0
        tracked = self.track and any(iou(face, g) >= 0.5 for g in self._accepted)
        if not why and self.presence is not None and not tracked:
            m = self.presence.run(image, Roi.from_detection(face))
            out.ms["mesh"] = out.ms.get("mesh", 0.0) + (time.perf_counter() - t1) * 1000.0
            p = m.presence if m is not None else 0.0
            if p < MIN_PRESENCE:
                why = [f"face-mesh presence {p:.2f} < {MIN_PRESENCE}"]
            if m is not None:
                face = dataclasses.replace(face, landmarks=m.points, presence=p)
        return why, face

    def find(self, image: np.ndarray) -> FoundFaces:
        """Detect, check and merge. ``image``: ``uint8 [H, W, 3]`` RGB."""
        out = FoundFaces(faces=[])
        if self.mode == "full":
            out.faces = self._run("full", image, out)
        else:
            faces = self._run("short", image, out)
            if self.mode == "auto" and (not faces or max(image.shape[:2]) >= self.large_side):
                for f in self._run("full", image, out, searching=not faces):
                    if all(iou(f, g) < 0.3 for g in faces):
                        faces.append(f)
            faces.sort(key=lambda f: -f.score)
            out.faces = faces
        self._accepted = list(out.faces) if self.track else []
        return out

    def close(self) -> None:
        for det in self._detectors.values():
            det.close()
        self._detectors.clear()
        if self.presence is not None:
            self.presence.close()
            self.presence = None
