"""VIDEO mode's detect-then-track, as MediaPipe's face pipelines do it: after a detection, each frame's face
region comes from the previous frame's face-mesh landmarks, and the detector runs again only when the face
is lost (presence below :data:`~sdk_python.face_presence.MIN_PRESENCE`, or its region leaves the frame), after
a gap in the timestamps, and every ``redetect_every`` frames as a safety net (a larger face that walked in,
a drift the presence score did not catch).

A tracked frame costs one face-mesh run (~1.4 ms on 2 cores) instead of the detector, the layout and skin
checks and the mesh (README "Reference SDK"); the crop is aligned on the mesh's keypoints either way
(:func:`sdk_python.face_mesh.alignment_keypoints`), so it does not jump between detected and tracked frames.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .face_mesh import FaceMesh, MeshResult, Roi, alignment_keypoints
from .face_presence import MIN_PRESENCE
from .result import FaceBox, FaceDetection


def face_from_mesh(result: MeshResult, keypoints: Optional[dict] = None) -> FaceDetection:
    """A :class:`FaceDetection` for a face the mesh found: the box around its landmarks, the alignment keypoints
    from them (or ``keypoints``), the presence as its score."""
    xy = result.points[:, :2]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    kps = alignment_keypoints(result.points) if keypoints is None else keypoints
    return FaceDetection(FaceBox(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), kps, result.presence,
                         landmarks=result.points, presence=result.presence)


class FaceTracker:
    """Follows one face through a video with the face mesh.

    Args:
        mesh: The face-mesh model.
        redetect_every: Ask for a detection after this many tracked frames in a row (0: only when lost).
        min_presence: Below this face-presence probability the face counts as lost.
    """

    def __init__(self, mesh: FaceMesh, redetect_every: int = 30, min_presence: float = MIN_PRESENCE):
        self.mesh = mesh
        self.redetect_every = int(redetect_every)
        self.min_presence = float(min_presence)
        self._points: Optional[np.ndarray] = None
        self._tracked_in_a_row = 0
        #: Why the last :meth:`follow` returned ``None`` (``"no face yet"``, ``"lost"``, ``"left the frame"``,
        #: ``"safety-net detection"``), for tests and debugging.
        self.last_miss: Optional[str] = None

    @property
    def following(self) -> bool:
        return self._points is not None

    def start(self, face: FaceDetection) -> None:
        """Follow ``face`` (just detected; needs its landmarks) from the next frame on."""
        self._points = face.landmarks
        self._tracked_in_a_row = 0

    def reset(self) -> None:
        self._points = None
        self._tracked_in_a_row = 0

    def follow(self, image: np.ndarray) -> Optional[FaceDetection]:
        """The face in this frame from the last frame's landmarks, or ``None`` when the detector must run
        (nothing followed yet, the face lost or out of the frame, or the safety net is due)."""
        if self._points is None:
            self.last_miss = "no face yet"
            return None
        if self.redetect_every and self._tracked_in_a_row >= self.redetect_every:
            self.last_miss = "safety-net detection"
            self.reset()
            return None
        roi = Roi.from_landmarks(self._points)
        h, w = image.shape[:2]
        if not roi.inside(w, h):
            self.last_miss = "left the frame"
            self.reset()
            return None
        result = self.mesh.run(image, roi)
        if result is None or result.presence < self.min_presence:
            self.last_miss = "lost"
            self.reset()
            return None
        self._points = result.points
        self._tracked_in_a_row += 1
        self.last_miss = None
        return face_from_mesh(result)
