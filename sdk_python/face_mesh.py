"""MediaPipe's face-mesh model (``face_landmark.tflite``): 468 landmarks and a face-presence score for one
region of interest, and the regions MediaPipe's face pipelines feed it.

A region (:class:`Roi`) is a rotated square: from a detection (:meth:`Roi.from_detection`: 1.5x the box,
eye line level) or from the previous frame's landmarks (:meth:`Roi.from_landmarks`: the box around all 468
points, square on its long side, 1.5x, turned along landmarks 33 -> 263), as MediaPipe's
``face_landmark_front`` graphs build them. The crop is 192 px RGB in
[0, 1] with replicated borders; the landmarks come back in crop pixels and are mapped to image pixels here.

:func:`alignment_keypoints` turns landmarks into the four keypoints the aligned crop is built from, in the
detector's convention (the mesh points nearest BlazeFace's keypoints, moved by the offsets measured
between the two: :data:`MESH_TO_DETECTOR`).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import DetectorError
from .framing import ALIGN_NAMES, warp
from .result import FaceDetection

INPUT_SIZE = 192
ROI_SCALE = 1.5
N_LANDMARKS = 468
_LANDMARK_OUTPUT = "conv2d_21"   # [1, 1, 1, 1404]: 468 x (x, y, z) in crop pixels
_PRESENCE_OUTPUT = "conv2d_31"   # [1, 1, 1, 1]: face-presence logit

#: Mesh points nearest BlazeFace's keypoints (the mean of each group): eye corners, nose tip, mouth corners.
#: "right"/"left" are the subject's, as in the detector's names.
MESH_POINTS: dict[str, tuple[int, ...]] = {
    "right_eye": (33, 133), "left_eye": (263, 362), "nose_tip": (1,), "mouth": (61, 291)}
#: Outer eye corners: the landmark box's rotation runs from the first to the second.
ROTATION_POINTS = (33, 263)

#: Systematic offset from the mesh points above to the detector's keypoints, per keypoint, in a face frame
#: whose x axis runs from the right to the left eye and whose unit is the distance between them, y pointing
#: down the face (fitted by ``python -m benchmarks mesh-keypoints``: mirror-symmetric median over 8 views of the
#: two packaged portraits and 57 proxy faces of both engines; ``benchmarks/results/mesh_keypoints.md``). The
#: detector's mouth sits 0.05 eye distances below the mouth corners' midpoint, its eyes 1 % closer together.
#: Aligned on the corrected points, proxy faces' eye and mouth masks land 1.8 px from the training framing in a
#: 256 px crop (refined detector keypoints: 3.5 px).
MESH_TO_DETECTOR: dict[str, tuple[float, float]] = {
    "right_eye": (0.0057, 0.0052), "left_eye": (-0.0057, 0.0052), "nose_tip": (0.0, -0.0242), "mouth": (0.0, 0.0522)}


@dataclass(frozen=True)
class Roi:
    """A rotated square region of an image: centre, side and rotation (radians, of the face's eye line)."""

    cx: float
    cy: float
    side: float
    theta: float = 0.0

    @classmethod
    def from_detection(cls, face: FaceDetection, scale: float = ROI_SCALE) -> "Roi":
        """The face-mesh region of a detection: ``scale`` x its box's longer side, turned to level the eyes."""
        b = face.box
        theta = 0.0
        if "right_eye" in face.keypoints and "left_eye" in face.keypoints:
            (rx, ry), (lx, ly) = face.keypoints["right_eye"], face.keypoints["left_eye"]
            theta = math.atan2(ly - ry, lx - rx)
        return cls(b.x + b.width / 2, b.y + b.height / 2, scale * max(b.width, b.height, 1e-6), theta)

    @classmethod
    def from_landmarks(cls, points: np.ndarray, scale: float = ROI_SCALE) -> "Roi":
        """The next frame's region from this frame's landmarks (``[468, >=2]`` image pixels): the axis-aligned
        box around them, square on its long side, ``scale`` x, turned along the outer eye corners."""
        xy = np.asarray(points, np.float64)[:, :2]
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        a, b = xy[ROTATION_POINTS[0]], xy[ROTATION_POINTS[1]]
        theta = math.atan2(b[1] - a[1], b[0] - a[0])
        return cls((x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0, 1e-6), theta)

    def transform(self, size: int = INPUT_SIZE) -> np.ndarray:
        """The ``[2, 3]`` matrix from image pixels to the ``size`` px crop of this region."""
        k = size / max(self.side, 1e-6)
        c, s = math.cos(self.theta) * k, math.sin(self.theta) * k
        # rotate by -theta about the centre, scale, centre in the crop
        return np.array([[c, s, size / 2 - c * self.cx - s * self.cy],
                         [-s, c, size / 2 + s * self.cx - c * self.cy]])

    def inside(self, width: int, height: int, margin: float = 0.0) -> bool:
        """Whether the region's centre lies in the image (``margin``: a fraction of the side it may stick out)."""
        m = margin * self.side
        return -m <= self.cx <= width + m and -m <= self.cy <= height + m


@dataclass(frozen=True)
class MeshResult:
    """The face-mesh model's answer for one region.

    Attributes:
        points: ``[468, 3]`` landmarks: x, y in image pixels, z in the same scale (relative depth).
        presence: Probability that the region holds a face.
        roi: The region the model was run on.
    """

    points: np.ndarray
    presence: float
    roi: Roi


def alignment_keypoints(points: np.ndarray, offsets: Optional[dict[str, tuple[float, float]]] = None
                        ) -> dict[str, tuple[float, float]]:
    """The aligned crop's keypoints (:data:`sdk_python.framing.ALIGN_NAMES`) from mesh landmarks, in image
    pixels, moved by ``offsets`` (default :data:`MESH_TO_DETECTOR`) into the detector's convention."""
    xy = np.asarray(points, np.float64)[:, :2]
    raw = {k: xy[list(MESH_POINTS[k])].mean(0) for k in ALIGN_NAMES}
    ex = raw["left_eye"] - raw["right_eye"]
    ey = np.array([-ex[1], ex[0]])   # the face's "down" (image y grows downwards)
    off = MESH_TO_DETECTOR if offsets is None else offsets
    return {k: tuple(float(v) for v in raw[k] + off[k][0] * ex + off[k][1] * ey) for k in ALIGN_NAMES}


def face_frame_offsets(points: np.ndarray, keypoints: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """``keypoints`` (a detector's) minus the raw mesh keypoints of ``points``, in the face frame of
    :data:`MESH_TO_DETECTOR` (what :func:`alignment_keypoints` adds back): one sample for fitting the offsets."""
    raw = alignment_keypoints(points, {k: (0.0, 0.0) for k in ALIGN_NAMES})
    ex = np.subtract(raw["left_eye"], raw["right_eye"])
    n2 = float(ex @ ex)
    ey = np.array([-ex[1], ex[0]])
    out = {}
    for k in ALIGN_NAMES:
        d = np.subtract(keypoints[k], raw[k])
        out[k] = (float(d @ ex / n2), float(d @ ey / n2))
    return out


class FaceMesh:
    """The face-mesh model under LiteRT, one region at a time (thread-safe).

    Args:
        model_path: ``face_landmark.tflite`` (:func:`sdk_python.detector_models.fetch_model` ``("mesh")``).
        num_threads: LiteRT threads.
        quiet: Hide what LiteRT writes to fd 2 while it loads and first runs the model (``None``:
            :func:`sdk_python.native_logs.sdk_quiet`).

    Raises:
        DetectorError: ai-edge-litert is missing or the file is not the face-mesh model.
    """

    def __init__(self, model_path: Union[str, Path], num_threads: int = 1, quiet: Optional[bool] = None):
        from .native_logs import is_quiet, quiet_stderr, sdk_quiet
        self.quiet = is_quiet() or (sdk_quiet() if quiet is None else quiet)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise DetectorError(f"ai-edge-litert is not installed ({exc}): `pip install ai-edge-litert`, or turn the "
                                "face checks off (face_checks=False)") from None
        try:
            with quiet_stderr(self.quiet):   # LiteRT logs its delegate (and a model's sparse tensors) on fd 2
                self._it = Interpreter(model_path=str(model_path), num_threads=num_threads)
                self._it.allocate_tensors()
                inp = self._it.get_input_details()[0]
                outs = {d["name"]: d["index"] for d in self._it.get_output_details()}
                self._input, self._points, self._presence = inp["index"], outs[_LANDMARK_OUTPUT], outs[_PRESENCE_OUTPUT]
                if tuple(inp["shape"]) == (1, INPUT_SIZE, INPUT_SIZE, 3):
                    self._it.set_tensor(self._input, np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32))
                    self._it.invoke()   # warm-up: the first run sets up the delegate
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

    def crop(self, image: np.ndarray, roi: Roi) -> np.ndarray:
        """The model's ``192 x 192`` uint8 RGB input for ``roi`` (raises ``ValueError`` when it lies off the image)."""
        M = roi.transform()
        if self._cv2 is None:
            return warp(image, M, INPUT_SIZE)
        h, w = image.shape[:2]
        corners = np.linalg.inv(np.vstack([M, [0, 0, 1]]))[:2] @ np.array(
            [[0, INPUT_SIZE, 0, INPUT_SIZE], [0, 0, INPUT_SIZE, INPUT_SIZE], [1, 1, 1, 1]], np.float64)
        if corners[0].max() <= 0 or corners[0].min() >= w or corners[1].max() <= 0 or corners[1].min() >= h:
            raise ValueError("the region lies outside the image")
        # OpenCV puts pixel centres on integers, the SDK (and MediaPipe's normalised landmarks) at i + 0.5
        Mc = M.copy()
        Mc[:, 2] += 0.5 * (M[:, 0] + M[:, 1]) - 0.5
        return self._cv2.warpAffine(image, Mc, (INPUT_SIZE, INPUT_SIZE), flags=self._cv2.INTER_LINEAR,
                                    borderMode=self._cv2.BORDER_REPLICATE)

    def _invoke(self, crop: np.ndarray, landmarks: bool) -> tuple[Optional[np.ndarray], float]:
        x = (crop.astype(np.float32) * (1.0 / 255.0))[None]
        with self._lock:
            self._it.set_tensor(self._input, x)
            self._it.invoke()
            logit = float(self._it.get_tensor(self._presence).reshape(-1)[0])
            pts = self._it.get_tensor(self._points).reshape(N_LANDMARKS, 3).copy() if landmarks else None
        return pts, 1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0)))

    def presence(self, image: np.ndarray, roi: Roi) -> float:
        """Probability that ``roi`` of ``image`` (uint8 RGB) holds a face; 0 when it lies off the image."""
        try:
            crop = self.crop(image, roi)
        except ValueError:
            return 0.0
        return self._invoke(crop, False)[1]

    def run(self, image: np.ndarray, roi: Roi) -> Optional[MeshResult]:
        """Landmarks (image pixels) and presence for ``roi`` of ``image``; ``None`` when it lies off the image."""
        try:
            crop = self.crop(image, roi)
        except ValueError:
            return None
        pts, presence = self._invoke(crop, True)
        inv = np.linalg.inv(np.vstack([roi.transform(), [0.0, 0.0, 1.0]]))
        xy = pts[:, :2] @ inv[:2, :2].T + inv[:2, 2]
        z = pts[:, 2:3] * (roi.side / INPUT_SIZE)
        return MeshResult(np.concatenate([xy, z], axis=1), presence, roi)

    def close(self) -> None:
        self._it = None
