"""BlazeFace short-range on LiteRT directly: the model MediaPipe's Tasks ``FaceDetector`` runs, with the same
pre- and post-processing, without the graph around it.

Why: on a 512 px frame the detector stage takes 2.6 ms p50 through the Tasks graph and 1.9 ms here (2 cores,
``benchmarks/results/sdk_latency_no_vnni``): the graph's scheduling and image conversion cost more than the
decoding restated below. IMAGE mode at 224 px has a 10 ms budget (100 Hz), and on a CPU with an int8 dot
product the estimator alone takes ~5.7 ms of it. MediaPipe stays the reference: the parity test
(``tests/test_sdk_blazeface.py``) compares both on the face corpus, and ``FaceDetector(runtime="mediapipe")``
(``AvatarEstimatorOptions.detector_runtime``) runs the Tasks graph.

The steps are MediaPipe's face-detector graph settings (``face_detector_graph.cc``), restated:

* the image is letterboxed to a square (the longer side, centred, zero border) and sampled bilinearly to
  128 x 128, values mapped to [-1, 1];
* 896 SSD anchors on 16 x 16 (2 per cell) and 8 x 8 (6 per cell) grids, fixed size 1; box and keypoint
  offsets are in input pixels (divided by 128), in x, y order;
* scores are sigmoids of logits clipped to +-100; boxes below the confidence floor are dropped;
* weighted non-maximum suppression: the best remaining box and every box overlapping it by IoU > 0.3 form
  a cluster; the output keeps the best score and the score-weighted mean of the cluster's boxes and keypoints.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import DetectorError
from .result import KEYPOINT_NAMES, FaceBox, FaceDetection

INPUT_SIZE = 128
#: Grid strides of the short-range model's four anchor layers (layers of equal stride share one grid).
STRIDES = (8, 16, 16, 16)
N_ANCHORS = 896
N_KEYPOINTS = 6
SCORE_CLIP = 100.0
#: MediaPipe's default ``min_suppression_threshold``.
SUPPRESSION_IOU = 0.3


def anchor_centres(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """``float32 [N, 2]`` anchor centres (x, y) in [0, 1], in the model's output order: per stride group, rows,
    then columns, then the group's anchors (two per layer: aspect ratio 1 and the interpolated scale)."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        cells = int(math.ceil(input_size / strides[i]))
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = SUPPRESSION_IOU) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression. ``boxes`` ``[N, 4]`` (xmin, ymin, xmax, ymax), ``points`` ``[N, K, 2]``,
    ``scores`` ``[N]``. Returns ``(box, points, score)`` per cluster, best first."""
    order = np.argsort(-scores, kind="stable")
    boxes, points, scores = boxes[order], points[order], scores[order]
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    left = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        b = boxes[i]
        iw = np.clip(np.minimum(boxes[:, 2], b[2]) - np.maximum(boxes[:, 0], b[0]), 0, None)
        ih = np.clip(np.minimum(boxes[:, 3], b[3]) - np.maximum(boxes[:, 1], b[1]), 0, None)
        inter = iw * ih
        union = area + area[i] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        cluster = left & (iou > iou_threshold)
        cluster[i] = True
        w = scores[cluster]
        total = float(w.sum())
        out.append(((boxes[cluster] * w[:, None]).sum(0) / total,
                    (points[cluster] * w[:, None, None]).sum(0) / total, float(scores[i])))
        left &= ~cluster
    return out


class BlazeFaceLite:
    """The short-range BlazeFace model on a LiteRT interpreter.

    Args:
        model_path: ``face_detection_short_range.tflite``.
        min_confidence: Detections scoring below this are dropped.
        num_threads: LiteRT threads (1: the model is small, and the estimator's interpreter holds the others).

    Raises:
        DetectorError: ai-edge-litert is missing, or the file is not a 128 px, 896-anchor BlazeFace model.
    """

    def __init__(self, model_path: Union[str, Path], min_confidence: float = 0.5, num_threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise DetectorError(f"ai-edge-litert is not installed ({exc}): `pip install ai-edge-litert`, or use "
                                "detector_runtime='mediapipe'") from None
        try:
            self._it = Interpreter(model_path=str(model_path), num_threads=num_threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DetectorError(f"LiteRT cannot load the face detector {model_path} ({exc}); use "
                                "face_detection_short_range.tflite") from None
        inp = self._it.get_input_details()[0]
        outs = {d["name"]: d for d in self._it.get_output_details()}
        reg, cls = outs.get("regressors"), outs.get("classificators")
        if (tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3) or reg is None or cls is None
                or tuple(reg["shape"]) != (1, N_ANCHORS, 4 + 2 * N_KEYPOINTS)):
            raise DetectorError(f"{model_path}: input {tuple(inp['shape'])}, outputs {sorted(outs)}; the LiteRT "
                                f"detector takes the short-range layout (input 1x{INPUT_SIZE}x{INPUT_SIZE}x3, "
                                f"{N_ANCHORS} anchors): use detector_runtime='mediapipe' for other BlazeFace models")
        self._input, self._reg, self._cls = inp["index"], reg["index"], cls["index"]
        self.min_confidence = float(min_confidence)
        self._anchors = anchor_centres()
        self._logit_floor = math.log(self.min_confidence / (1.0 - self.min_confidence)) if 0 < self.min_confidence < 1 \
            else (-math.inf if self.min_confidence <= 0 else math.inf)
        self._lock = threading.Lock()
        import cv2   # comes with mediapipe, like the face mesh's warp
        self._cv2 = cv2

    def tensor(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """The model's ``float32 [1, 128, 128, 3]`` input for ``uint8 [H, W, 3]`` RGB, and the letterbox
        ``(side, x0, y0)``: the square of ``side`` px whose top-left corner is ``(x0, y0)`` in the image."""
        h, w = image.shape[:2]
        side = float(max(h, w))
        x0, y0 = (w - side) / 2.0, (h - side) / 2.0
        k = INPUT_SIZE / side
        # output pixel i samples the image at x0 + i * side / 128, as MediaPipe's image-to-tensor warp does
        M = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]], np.float64)
        small = self._cv2.warpAffine(image, M, (INPUT_SIZE, INPUT_SIZE), flags=self._cv2.INTER_LINEAR,
                                     borderMode=self._cv2.BORDER_CONSTANT, borderValue=0)
        x = small.astype(np.float32)
        x *= 2.0 / 255.0
        x -= 1.0
        return x[None], side, x0, y0

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in ``uint8 [H, W, 3]`` RGB, boxes and keypoints in image pixels, highest score first."""
        x, side, x0, y0 = self.tensor(image)
        with self._lock:
            self._it.set_tensor(self._input, x)
            self._it.invoke()
            logits = self._it.get_tensor(self._cls).reshape(-1)
            keep = np.flatnonzero(logits >= self._logit_floor)
            if keep.size == 0:
                return []
            raw = self._it.get_tensor(self._reg)[0, keep]
        logits = np.clip(logits[keep].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
        scores = 1.0 / (1.0 + np.exp(-logits))
        a = self._anchors[keep].astype(np.float64)
        raw = raw.astype(np.float64) / INPUT_SIZE
        cx, cy = raw[:, 0] + a[:, 0], raw[:, 1] + a[:, 1]
        half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
        points = raw[:, 4:].reshape(-1, N_KEYPOINTS, 2) + a[:, None, :]
        h, w = image.shape[:2]
        out = []
        for box, pts, score in weighted_nms(boxes, points, scores):
            bx0, by0, bx1, by1 = box * side + np.array([x0, y0, x0, y0])
            # whole pixels, clipped, as the Tasks API gives its boxes (the corner into the image, the size to the
            # image's): the face checks' limits and the mesh's region were set on those boxes, and a painted face
            # near the presence threshold can flip on a fraction of a pixel (proxy_morph/5 of the face corpus)
            cx0, cy0 = int(max(float(bx0), 0.0)), int(max(float(by0), 0.0))
            bw, bh = int(min(float(bx1 - bx0), float(w))), int(min(float(by1 - by0), float(h)))
            kps = {name: (float(px * side + x0), float(py * side + y0)) for name, (px, py) in zip(KEYPOINT_NAMES, pts)}
            out.append(FaceDetection(box=FaceBox(float(cx0), float(cy0), float(bw), float(bh)), keypoints=kps,
                                     score=score))
        return out

    def close(self) -> None:
        self._it = None

