"""Is a detection a human face? MediaPipe's face-mesh model, asked about the detection's crop.

BlazeFace answers for any patch with a face-like layout; the keypoint-geometry and skin checks of
:mod:`sdk_python.face_check` remove noise and textures, but a drawn animal with a human layout and
skin-coloured fur passes them. The face-mesh model (``face_landmark.tflite``, the same mediapipe wheel,
pinned in the model contract) has a second output trained to say whether its crop holds a face; a
detection whose crop scores below :data:`MIN_PRESENCE` is rejected.

The crop follows MediaPipe's face-mesh convention: a square 1.5x the detection box, centred on it,
turned so the eye line is level, at 192 px, RGB scaled to [0, 1]. ``python -m benchmarks detection``
measures what the check removes (drawn animals) and loses (human faces); README "Face detection".
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Union

import numpy as np

from .errors import DetectorError
from .framing import warp
from .result import FaceDetection

#: MediaPipe's own threshold for the face-mesh presence score.
MIN_PRESENCE = 0.5
INPUT_SIZE = 192
ROI_SCALE = 1.5
_PRESENCE_OUTPUT = "conv2d_31"   # [1, 1, 1, 1] logit; "conv2d_21" holds the 468 x 3 landmarks


def roi_transform(face: FaceDetection, size: int = INPUT_SIZE, scale: float = ROI_SCALE) -> np.ndarray:
    """The ``[2, 3]`` matrix from image pixels to the face-mesh crop of ``face``."""
    b = face.box
    cx, cy = b.x + b.width / 2, b.y + b.height / 2
    k = size / (scale * max(b.width, b.height, 1e-6))
    theta = 0.0
    if "right_eye" in face.keypoints and "left_eye" in face.keypoints:
        (rx, ry), (lx, ly) = face.keypoints["right_eye"], face.keypoints["left_eye"]
        theta = math.atan2(ly - ry, lx - rx)
    c, s = math.cos(theta) * k, math.sin(theta) * k
    # rotate by -theta about the box centre, scale, centre in the crop
    return np.array([[c, s, size / 2 - c * cx - s * cy], [-s, c, size / 2 + s * cx - c * cy]])


class FacePresence:
    """The face-mesh model under LiteRT, scoring one detection at a time.

    Args:
        model_path: ``face_landmark.tflite`` (:func:`sdk_python.detector_models.fetch_model` ``("mesh")``).
        num_threads: LiteRT threads (the estimator passes its own ``num_threads``).

    Raises:
        DetectorError: ai-edge-litert is missing or the file is not the face-mesh model.
    """

    def __init__(self, model_path: Union[str, Path], num_threads: int = 1):
        from .native_logs import quiet_stderr
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise DetectorError(f"ai-edge-litert is not installed ({exc}): `pip install ai-edge-litert`, or turn the "
                                "face checks off (face_checks=False)") from None
        try:
            with quiet_stderr():   # LiteRT warns about the model's sparse tensors on fd 2
                self._it = Interpreter(model_path=str(model_path), num_threads=num_threads)
                self._it.allocate_tensors()
            inp = self._it.get_input_details()[0]
            outs = {d["name"]: d["index"] for d in self._it.get_output_details()}
            self._input, self._presence = inp["index"], outs[_PRESENCE_OUTPUT]
        except (ValueError, RuntimeError, KeyError) as exc:
            raise DetectorError(f"{model_path} is not MediaPipe's face-mesh model face_landmark.tflite ({exc})") from None
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise DetectorError(f"{model_path}: input {tuple(inp['shape'])}, expected (1, {INPUT_SIZE}, {INPUT_SIZE}, 3)")
        self._lock = threading.Lock()
        try:   # OpenCV comes with mediapipe: its warp is ~13x faster than Pillow's here (0.05 vs 0.66 ms)
            import cv2
            self._cv2 = cv2
        except ImportError:
            self._cv2 = None

    def _crop(self, image: np.ndarray, face: FaceDetection) -> np.ndarray:
        M = roi_transform(face)
        if self._cv2 is None:
            return warp(image, M, INPUT_SIZE)
        return self._cv2.warpAffine(image, M, (INPUT_SIZE, INPUT_SIZE), flags=self._cv2.INTER_LINEAR,
                                    borderMode=self._cv2.BORDER_REPLICATE)

    def score(self, image: np.ndarray, face: FaceDetection) -> float:
        """Probability that ``face`` (in ``image``, uint8 RGB) is a human face; 0 when its crop lies off the image."""
        try:
            crop = self._crop(image, face)
        except ValueError:
            return 0.0
        x = (crop.astype(np.float32) * (1.0 / 255.0))[None]
        with self._lock:
            self._it.set_tensor(self._input, x)
            self._it.invoke()
            logit = float(self._it.get_tensor(self._presence).reshape(-1)[0])
        return 1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0)))

    def close(self) -> None:
        self._it = None
