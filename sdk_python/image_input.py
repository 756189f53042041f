"""Turn whatever the caller passes into a validated ``uint8 [H, W, 3]`` RGB array.

Accepted: numpy arrays (``HxW`` gray, ``HxWx1``, ``HxWx3``, ``HxWx4``; uint8, or float in [0, 1]),
PIL images (any mode) and file paths / bytes (JPEG, PNG, WebP, anything Pillow decodes; EXIF
orientation applied). 3/4-channel numpy arrays need their colour order stated (``"rgb"`` or
``"bgr"``): a silent channel swap would give a plausible but wrong skin and hair colour.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLargeError, ImageTooSmallError, InvalidImageError, UnsupportedImageFormatError

MIN_SIDE = 32                 # below this no face can be found (BlazeFace input is 128x128)
MAX_SIDE = 16_384
MAX_PIXELS = 64_000_000       # 64 MP: a 20,000 x 20,000 image (1.2 GB as RGB) is refused before decoding

ImageLike = Union[np.ndarray, "Image.Image", str, os.PathLike, bytes]


class RgbImage(np.ndarray):
    """What :func:`load_image` returns: a ``uint8 [H, W, 3]`` numpy array that carries its channel order, as
    MediaPipe's ``mp.Image`` carries its format, so ``estimate(load_image(path))`` needs no ``color_order``.

    Attributes:
        color_order: ``"rgb"`` for the array :func:`load_image` returned; ``None`` for any array derived from it
            (a slice, ``img[..., ::-1]``, arithmetic): numpy cannot tell which of those keep the order, so a
            derived array states it again like any other array.
    """

    color_order: Optional[str]

    def __array_finalize__(self, obj: Any) -> None:
        self.color_order = None


def _tag(a: np.ndarray) -> RgbImage:
    out = a.view(RgbImage)
    out.color_order = "rgb"
    return out


def carried_color_order(image: Any) -> Optional[str]:
    """The channel order an image states itself (a :class:`RgbImage` from :func:`load_image`), else ``None``."""
    return getattr(image, "color_order", None) if isinstance(image, RgbImage) else None


def _check_size(w: int, h: int, what: str) -> None:
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageTooSmallError(f"{what} is {w}x{h} pixels; the SDK needs at least {MIN_SIDE}x{MIN_SIDE} "
                                 f"(faces should be >= 64 px across): pass a larger image")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise ImageTooLargeError(f"{what} is {w}x{h} pixels; the SDK accepts at most {MAX_SIDE} px per side and "
                                 f"{MAX_PIXELS // 1_000_000} MP: downscale it first (a face needs only ~200 px)")


def load_image(image: Any, color_order: Optional[str] = None) -> RgbImage:
    """Validate and convert an input image.

    Args:
        image: numpy array, PIL image, path (str / ``os.PathLike``) or encoded bytes.
        color_order: ``"rgb"`` or ``"bgr"``; required for 3- and 4-channel numpy arrays, except a
            :class:`RgbImage` this function returned, which states its own.

    Returns:
        A C-contiguous ``uint8 [H, W, 3]`` RGB array (an :class:`RgbImage`: ``color_order == "rgb"``).

    Raises:
        InvalidImageError: wrong type, dtype, shape, non-finite or out-of-range values, missing
            colour order, or a ``color_order`` that contradicts the image's own.
        UnsupportedImageFormatError: a file that cannot be decoded (unknown format, truncated, corrupt).
        ImageTooSmallError / ImageTooLargeError: size outside the accepted range.
    """
    carried = carried_color_order(image)
    if carried is not None:
        if color_order is not None and color_order.lower() != carried:
            raise InvalidImageError(f"the image states its channel order is {carried!r} (it came from load_image), "
                                    f"but color_order={color_order!r} was passed: drop the argument, or pass "
                                    "np.asarray(image) if the channels were really reordered")
        color_order = carried
    return _tag(_load(image, color_order))


def _load(image: Any, color_order: Optional[str]) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return _from_array(np.asarray(image), color_order)
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, "the PIL image")
        return _from_pil(image, "the PIL image")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _from_file(io.BytesIO(bytes(image)), "the image bytes")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InvalidImageError(f"{path}: no such file")
        return _from_file(path, str(path))
    raise InvalidImageError(f"unsupported input type {type(image).__name__}: pass a numpy array (with color_order), "
                            "a PIL image, a file path or encoded image bytes")


def _from_file(src: Any, what: str) -> np.ndarray:
    try:
        with Image.open(src) as im:
            # Image.open reads only the header: refuse huge images before any pixel is decoded.
            _check_size(im.width, im.height, what)
            im.load()
            im = ImageOps.exif_transpose(im)
            return _from_pil(im, what)
    except (ImageTooSmallError, ImageTooLargeError):
        raise
    except UnidentifiedImageError:
        raise UnsupportedImageFormatError(f"{what}: not an image format Pillow can read (use JPEG, PNG or WebP)") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{what}: {exc}; downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedImageFormatError(f"{what} could not be decoded ({exc}): the file is truncated or corrupt; "
                                          "re-encode or re-download it") from None


def _from_pil(im: "Image.Image", what: str) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        return _flatten_alpha(np.asarray(im))
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return _from_array(np.clip(a / hi, 0, 1).astype(np.float32), None)
    try:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise UnsupportedImageFormatError(f"{what}: cannot convert mode {im.mode} to RGB ({exc})") from None


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Composite over white: transparent regions become a plain background, as in a photo booth."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.ascontiguousarray(np.round(out).astype(np.uint8))


def _from_array(a: np.ndarray, color_order: Optional[str]) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidImageError(f"array of shape {a.shape}: expected HxW (gray), HxWx3 or HxWx4")
    h, w = a.shape[:2]
    _check_size(w, h, f"the array ({a.shape})")
    if a.dtype == np.uint8:
        u8 = a
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InvalidImageError("the array contains NaN or infinite values: fix the pixels before estimating")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(f"float array values span [{lo:.3g}, {hi:.3g}]; float images must be in [0, 1] "
                                    "(or pass uint8 0..255)")
        u8 = np.round(a * 255.0).astype(np.uint8)
    else:
        raise InvalidImageError(f"array dtype {a.dtype} is not supported: pass uint8 (0..255) or float32 in [0, 1]")
    if u8.ndim == 2:
        return np.ascontiguousarray(np.repeat(u8[..., None], 3, axis=2))
    order = (color_order or "").lower()
    if order not in ("rgb", "bgr"):
        raise InvalidImageError("numpy arrays with colour channels need their channel order stated: pass "
                                "color_order='rgb' (PIL, skimage, matplotlib) or 'bgr' (OpenCV), per call or in the options")
    if order == "bgr":
        u8 = u8[..., [2, 1, 0, 3]] if u8.shape[2] == 4 else u8[..., ::-1]
    if u8.shape[2] == 4:
        return _flatten_alpha(u8)
    return np.ascontiguousarray(u8)
