"""Is a detection a human face? MediaPipe's face-mesh model, asked about the detection's crop.

BlazeFace answers for any patch with a face-like layout; the keypoint-geometry and skin checks of
:mod:`sdk_python.face_check` remove noise and textures, but a drawn animal with a human layout and
skin-coloured fur passes them. The face-mesh model (``face_landmark.tflite``, the same mediapipe wheel,
pinned in the model contract; run by :mod:`sdk_python.face_mesh`) has a second output trained to say
whether its crop holds a face; a detection whose crop scores below :data:`MIN_PRESENCE` is rejected.

The crop follows MediaPipe's face-mesh convention: a square 1.5x the detection box, centred on it,
turned so the eye line is level, at 192 px, RGB scaled to [0, 1]. ``python -m benchmarks detection``
measures what the check removes (drawn animals) and loses (human faces); README "Face detection".
"""
from __future__ import annotations

import numpy as np

from .face_mesh import INPUT_SIZE, ROI_SCALE, FaceMesh, Roi
from .result import FaceDetection

#: MediaPipe's own threshold for the face-mesh presence score (also: a tracked face is lost below it).
MIN_PRESENCE = 0.5


def roi_transform(face: FaceDetection, size: int = INPUT_SIZE, scale: float = ROI_SCALE) -> np.ndarray:
    """The ``[2, 3]`` matrix from image pixels to the face-mesh crop of ``face``."""
    return Roi.from_detection(face, scale).transform(size)


class FacePresence(FaceMesh):
    """The face-mesh model, scoring one detection at a time (see :class:`sdk_python.face_mesh.FaceMesh` for
    the arguments and errors)."""

    def score(self, image: np.ndarray, face: FaceDetection) -> float:
        """Probability that ``face`` (in ``image``, uint8 RGB) is a human face; 0 when its crop lies off the image."""
        return self.presence(image, Roi.from_detection(face))
