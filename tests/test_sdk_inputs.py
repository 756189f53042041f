"""Input validation and conversion (sdk_python/image_input.py): every bad input is a typed error."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sdk_python import (AvatarSDKError, ImageTooLargeError, ImageTooSmallError, InvalidImageError,
                        UnsupportedImageFormatError, load_image)


def _rgb(h=64, w=96):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h (pixel data absent): the size check must fire before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_all_errors_share_one_base():
    for cls in (ImageTooLargeError, ImageTooSmallError, InvalidImageError, UnsupportedImageFormatError):
        assert issubclass(cls, AvatarSDKError)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 1), (10, 500, 3)])
def test_too_small(shape):
    with pytest.raises(ImageTooSmallError, match="at least"):
        load_image(np.zeros(shape, np.uint8), "rgb")


def test_too_large_array_is_refused_without_allocating():
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20_000, 20_000, 3))  # a view: no 1.2 GB buffer
    with pytest.raises(ImageTooLargeError, match="downscale"):
        load_image(huge, "rgb")


def test_too_large_file_is_refused_before_decoding(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(20_000, 20_000))
    with pytest.raises(ImageTooLargeError):
        load_image(p)
    with pytest.raises(ImageTooLargeError):
        load_image(p.read_bytes())


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(200, 200)).save(buf, format="JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(UnsupportedImageFormatError, match="truncated or corrupt"):
        load_image(p)


def test_garbage_bytes_and_missing_file(tmp_path):
    with pytest.raises(UnsupportedImageFormatError):
        load_image(b"definitely not an image" * 10)
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize("bad, match", [
    (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
    (np.full((64, 64, 3), 2.0, np.float32), r"\[0, 1\]"),
    (np.zeros((64, 64, 3), np.int64), "dtype"),
    (np.zeros((64, 64, 3), np.complex64), "dtype"),
    (np.zeros((64, 64, 5), np.uint8), "shape"),
    (np.zeros((2, 64, 64, 3), np.uint8), "shape"),
])
def test_bad_arrays(bad, match):
    with pytest.raises(InvalidImageError, match=match):
        load_image(bad, "rgb")


def test_unsupported_type():
    with pytest.raises(InvalidImageError, match="unsupported input type"):
        load_image([[1, 2, 3]])


def test_numpy_color_order_must_be_stated_and_is_honoured():
    a = _rgb()
    with pytest.raises(InvalidImageError, match="color_order"):
        load_image(a)
    assert np.array_equal(load_image(a, "rgb"), a)
    assert np.array_equal(load_image(np.ascontiguousarray(a[..., ::-1]), "bgr"), a)
    assert np.array_equal(load_image(a.astype(np.float32) / 255, "rgb"), a)


def test_gray_and_rgba_are_converted():
    g = _rgb()[..., 0]
    out = load_image(g)                        # 2-D: no colour order needed
    assert out.shape == (64, 96, 3) and np.array_equal(out[..., 1], g)
    assert load_image(g[..., None]).shape == (64, 96, 3)
    rgba = np.dstack([_rgb(), np.zeros((64, 96), np.uint8)])
    assert (load_image(rgba, "rgb") == 255).all()      # fully transparent -> white
    rgba[..., 3] = 255
    assert np.array_equal(load_image(rgba, "rgb"), rgba[..., :3])
    assert np.array_equal(load_image(Image.fromarray(rgba, "RGBA")), rgba[..., :3])
    assert load_image(Image.fromarray(g, "L")).shape == (64, 96, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_file_formats(tmp_path, fmt):
    p = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(_rgb()).save(p, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = load_image(str(p))
    assert out.shape == (64, 96, 3) and out.dtype == np.uint8
    if fmt != "JPEG":
        assert np.array_equal(out, _rgb())


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_rgb(64, 96))
    exif = Image.Exif()
    exif[0x0112] = 6                           # "rotate 90 CW to display"
    p = tmp_path / "rotated.jpg"
    img.save(p, exif=exif.tobytes(), quality=95)
    assert load_image(p).shape == (96, 64, 3)
