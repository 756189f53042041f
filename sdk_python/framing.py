"""THE canonical face framing, shared by the training-data writers and the SDK.

The estimator is trained on whole engine renders / proxy photos, all drawn on the built-in engines'
256x256 design canvas (``toolchain/engines/face_art.py``): midline ``CX = 128``, eye centres at
``(128 -+ 20, 124)`` (``eye_spacing = 1``), nose bottom at ``128 + 18 = 146``, mouth line at
``(146 + 184) / 2 + 1 = 166`` (chin at ``150 + 34 = 184``), head top at 62. Dividing by 256 gives the
positions below in a unit square; at run time the SDK maps the detector's keypoints onto them with a
similarity transform (:func:`align`), so a face anywhere in a photo is cropped the way the estimator
saw faces in training. Change the framing here and only here (``tests/test_sdk_framing.py`` checks it
against the renders' eye and mouth masks).

Pure numpy + Pillow (OpenCV's warp when it is installed, as it is with mediapipe: the same bilinear crop,
faster): importable by the SDK on a phone-team machine and by ``toolchain``.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np
from PIL import Image

DESIGN_SIZE = 256.0

#: Canonical keypoints in the unit square (x right, y down), named as MediaPipe's face detector names
#: them: "right"/"left" are the subject's, so ``right_eye`` sits on the image's left.
CANONICAL_KEYPOINTS: dict[str, tuple[float, float]] = {
    "right_eye": (108.0 / DESIGN_SIZE, 124.0 / DESIGN_SIZE),
    "left_eye": (148.0 / DESIGN_SIZE, 124.0 / DESIGN_SIZE),
    "nose_tip": (128.0 / DESIGN_SIZE, 146.0 / DESIGN_SIZE),
    "mouth": (128.0 / DESIGN_SIZE, 166.0 / DESIGN_SIZE),
}

#: Least-squares weight of each keypoint in the fit: the nose tip moves most with head yaw.
KEYPOINT_WEIGHTS: dict[str, float] = {"right_eye": 1.0, "left_eye": 1.0, "nose_tip": 0.5, "mouth": 1.0}

ALIGN_NAMES = tuple(CANONICAL_KEYPOINTS)


def canonical_points(out_size: int) -> np.ndarray:
    """``[4, 2]`` canonical keypoints (order :data:`ALIGN_NAMES`) in pixels of an ``out_size`` square."""
    return np.array([CANONICAL_KEYPOINTS[k] for k in ALIGN_NAMES], dtype=np.float64) * float(out_size)


def _as_points(keypoints: Union[Mapping[str, Sequence[float]], np.ndarray]) -> np.ndarray:
    if isinstance(keypoints, Mapping):
        missing = [k for k in ALIGN_NAMES if k not in keypoints]
        if missing:
            raise ValueError(f"keypoints lack {missing}; need {list(ALIGN_NAMES)}")
        pts = np.array([keypoints[k] for k in ALIGN_NAMES], dtype=np.float64)
    else:
        pts = np.asarray(keypoints, dtype=np.float64)[:len(ALIGN_NAMES)]
    if pts.shape != (len(ALIGN_NAMES), 2) or not np.isfinite(pts).all():
        raise ValueError(f"keypoints must be {len(ALIGN_NAMES)} finite (x, y) pairs in order {list(ALIGN_NAMES)}")
    return pts


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted least-squares similarity (rotation, uniform scale, translation; no reflection).

    Args:
        src: ``[N, 2]`` source points.
        dst: ``[N, 2]`` destination points.
        weights: optional ``[N]`` non-negative weights.

    Returns:
        ``[2, 3]`` matrix ``M`` with ``dst ~= M @ [x, y, 1]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    ms, md = (w[:, None] * src).sum(0), (w[:, None] * dst).sum(0)
    s, d = src - ms, dst - md
    norm = (w * (s ** 2).sum(1)).sum()
    if norm <= 1e-12:
        raise ValueError("keypoints coincide: cannot fit a similarity transform")
    a = (w * (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1])).sum() / norm
    b = (w * (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0])).sum() / norm
    R = np.array([[a, -b], [b, a]])
    t = md - R @ ms
    return np.hstack([R, t[:, None]])


def alignment_transform(keypoints: Union[Mapping[str, Sequence[float]], np.ndarray], out_size: int) -> np.ndarray:
    """The ``[2, 3]`` matrix mapping image pixels to the ``out_size`` canonical crop."""
    return similarity_transform(_as_points(keypoints), canonical_points(out_size),
                                [KEYPOINT_WEIGHTS[k] for k in ALIGN_NAMES])


def align(image: np.ndarray, keypoints: Union[Mapping[str, Sequence[float]], np.ndarray], out_size: int,
          window: Sequence[int] | None = None) -> np.ndarray:
    """Crop ``image`` so the face lands on the canonical framing.

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        keypoints: ``{name: (x, y)}`` in pixels (continuous coordinates: pixel ``i`` spans
            ``[i, i + 1)``) with at least :data:`ALIGN_NAMES`, or a ``[>=4, 2]`` array in that order.
        out_size: Side of the square output in pixels.
        window: Optional ``(x0, y0, x1, y1)`` in output pixels: sample only that part of the crop
            (a measurement that needs a few cheek pixels need not resample the whole head).

    Returns:
        ``uint8 [out_size, out_size, 3]`` (or the window's size). Areas outside the image repeat its
        edge pixels; a large downscale is box-filtered first so the crop does not alias.
    """
    return warp(image, alignment_transform(keypoints, out_size), out_size, window)


def warp(image: np.ndarray, M: np.ndarray, out_size: int, window: Sequence[int] | None = None) -> np.ndarray:
    """Resample ``image`` through the ``[2, 3]`` similarity ``M`` (image pixels -> output pixels) into an
    ``out_size`` square (or its ``window``, as for :func:`align`): edges repeated, large downscales
    box-filtered first."""
    wx0, wy0, wx1, wy1 = (0, 0, out_size, out_size) if window is None else (int(v) for v in window)
    if not (0 <= wx0 < wx1 <= out_size and 0 <= wy0 < wy1 <= out_size):
        raise ValueError(f"window {tuple(window or ())} must lie inside the {out_size} px crop")
    cv2 = _cv2()
    if cv2 is not None:
        return _warp_cv2(cv2, image, M, out_size, (wx0, wy0, wx1, wy1))
    A = np.vstack([M, [0.0, 0.0, 1.0]])
    # output pixel (window-local) -> input pixel
    inv = np.linalg.inv(A) @ np.array([[1.0, 0.0, wx0], [0.0, 1.0, wy0], [0.0, 0.0, 1.0]])
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))   # output px per input px
    h, w = image.shape[:2]
    ow, oh = wx1 - wx0, wy1 - wy0
    factor = max(1, int(np.floor(1.0 / scale))) if scale < 0.5 else 1

    def source_box(T: np.ndarray, cw: int, ch: int) -> tuple[int, int, int, int]:
        src = np.array([[0, 0, 1], [cw, 0, 1], [0, ch, 1], [cw, ch, 1]], np.float64) @ T[:2].T
        return (int(np.floor(src[:, 0].min())) - 2, int(np.floor(src[:, 1].min())) - 2,
                int(np.ceil(src[:, 0].max())) + 2, int(np.ceil(src[:, 1].max())) + 2)
    x0, y0, x1, y1 = source_box(inv, ow, oh)
    if window is not None and factor > 1:
        # start on the whole crop's reduction grid, so a window shows exactly the whole crop's pixels
        fx0, fy0, _, _ = source_box(np.linalg.inv(A), out_size, out_size)
        x0 -= (x0 - fx0) % factor
        y0 -= (y0 - fy0) % factor
    # round the region up to whole reduction blocks
    x1 += (-(x1 - x0)) % factor
    y1 += (-(y1 - y0)) % factor
    region = image[max(y0, 0):max(min(y1, h), 0), max(x0, 0):max(min(x1, w), 0)]
    if region.size == 0:  # nothing of the image in the crop: nothing sensible to resample
        raise ValueError("the crop (the face the keypoints place) lies outside the image")
    pad = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)), (0, 0))
    if any(p for pair in pad[:2] for p in pair):
        region = np.pad(region, pad, mode="edge")
    pil = Image.fromarray(np.ascontiguousarray(region))
    if factor > 1:
        pil = pil.reduce(factor)
    # output -> region-local (and reduced) input coordinates
    T = np.array([[1.0 / factor, 0, -x0 / factor], [0, 1.0 / factor, -y0 / factor], [0, 0, 1]]) @ inv
    coeffs = tuple(T[:2].reshape(-1))
    out = pil.transform((ow, oh), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return np.asarray(out)


def _cv2():
    """OpenCV when it is installed (it comes with mediapipe), else ``None`` (the Pillow path: the same crop within a
    grey level)."""
    try:
        import cv2
        return cv2
    except ImportError:
        return None


def _warp_cv2(cv2, image: np.ndarray, M: np.ndarray, out_size: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """:func:`warp` with OpenCV's bilinear warp: ~10x faster than Pillow's at 224 px (3.2 -> 0.3 ms on 2 cores).

    A window is the top-left ``[0, x1) x [0, y1)`` of the crop warped with the whole crop's matrix, then cut:
    OpenCV's fixed-point coordinates depend on the matrix, so only the same matrix gives the same pixels.
    Without a reduction the whole image is the source (``BORDER_REPLICATE`` repeats its edges, as the Pillow
    path's padding does), so OpenCV reads only the pixels it needs."""
    wx0, wy0, wx1, wy1 = window
    A = np.vstack([M, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(A)   # crop pixel -> image pixel
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    h, w = image.shape[:2]
    factor = max(1, int(np.floor(1.0 / scale))) if scale < 0.5 else 1
    src = np.array([[0, 0, 1], [out_size, 0, 1], [0, out_size, 1], [out_size, out_size, 1]], np.float64) @ inv[:2].T
    x0, y0 = int(np.floor(src[:, 0].min())) - 2, int(np.floor(src[:, 1].min())) - 2
    x1, y1 = int(np.ceil(src[:, 0].max())) + 2, int(np.ceil(src[:, 1].max())) + 2
    if min(x1, w) <= max(x0, 0) or min(y1, h) <= max(y0, 0):
        raise ValueError("the crop (the face the keypoints place) lies outside the image")
    if factor == 1:
        region, T = np.ascontiguousarray(image), inv
    else:   # box-filter the crop's source (on whole reduction blocks) first, so a large downscale does not alias
        x1 += (-(x1 - x0)) % factor
        y1 += (-(y1 - y0)) % factor
        region = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        top, bottom, left, right = max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w)
        if top or bottom or left or right:
            region = cv2.copyMakeBorder(np.ascontiguousarray(region), top, bottom, left, right, cv2.BORDER_REPLICATE)
        # INTER_AREA at a whole factor is the box average Pillow's reduce() computes
        region = cv2.resize(np.ascontiguousarray(region), ((x1 - x0) // factor, (y1 - y0) // factor),
                            interpolation=cv2.INTER_AREA)
        T = np.array([[1.0 / factor, 0, -x0 / factor], [0, 1.0 / factor, -y0 / factor], [0, 0, 1]]) @ inv
    # OpenCV puts pixel centres on integers, this module (and Pillow) at i + 0.5: shift in and out by half a pixel
    Tc = T[:2].copy()
    Tc[:, 2] += 0.5 * (T[:2, 0] + T[:2, 1]) - 0.5
    out = cv2.warpAffine(region, Tc, (wx1, wy1), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out[wy0:wy1, wx0:wx1])


def frame_whole(image: np.ndarray, out_size: int) -> np.ndarray:
    """The training-time framing for already-framed inputs: the whole image resized (antialiased
    bilinear, like ``toolchain.estimator.train.prepare_batch``) to ``out_size``."""
    h, w = image.shape[:2]
    if (h, w) == (out_size, out_size):
        return image
    return np.asarray(Image.fromarray(image).resize((out_size, out_size), Image.BILINEAR))


def keypoints_from_canonical(out_size: float) -> dict[str, tuple[float, float]]:
    """Canonical keypoints in pixels of an ``out_size`` image (for writers and tests)."""
    return {k: (x * out_size, y * out_size) for k, (x, y) in CANONICAL_KEYPOINTS.items()}
