"""Write a ``*.swiftavatar`` model bundle: one zip, members stored uncompressed and 4-byte aligned.

Alignment uses the zipalign trick: each member's local-header *extra field* is padded (extra id
0xD935, as Android's zipalign) so that the member's data starts at an offset divisible by 4, letting a
phone mmap a model straight out of the bundle, as MediaPipe ``.task`` files allow.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from sdk_python.bundle import check_manifest
from sdk_python.contract import ALIGNMENT, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST
from sdk_python.errors import BundleError

_PAD_ID = 0xD935
_FIXED_DATE = (2020, 1, 1, 0, 0, 0)  # reproducible archives


def _aligned_info(name: str, offset: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    base = offset + 30 + len(name.encode("utf-8"))  # local header is 30 bytes + name + extra
    pad = (-(base + 4)) % ALIGNMENT                  # 4 = extra field header (id, size)
    info.extra = struct.pack("<HH", _PAD_ID, pad) + b"\0" * pad
    return info


def zip_directory(path: Path) -> bytes:
    """A directory (e.g. an .mlpackage) as stored-zip bytes with sorted, relative member names."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{path.name}/{f.relative_to(path).as_posix()}", date_time=_FIXED_DATE)
            zf.writestr(info, f.read_bytes())
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(out_path: str | Path, manifest: dict[str, Any], members: dict[str, bytes]) -> dict[str, Any]:
    """Write ``members`` plus ``manifest.json`` (first) to ``out_path`` atomically.

    The manifest gains ``format``, ``format_version`` and ``members`` ({name: {sha256, size}}); every
    model entry in ``manifest["models"]`` must name a member. Returns the final manifest.
    """
    out_path = Path(out_path)
    for name in members:
        if name.startswith("/") or ".." in Path(name).parts or "\\" in name:
            raise ValueError(f"bad member name {name!r}")
    manifest = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **manifest,
                "members": {n: {"sha256": sha256(d), "size": len(d)} for n, d in members.items()}}
    try:  # the reader's own checks, so that nothing is written that the SDK would refuse
        check_manifest(manifest)
    except BundleError as exc:
        raise ValueError(f"refusing to write {out_path.name}: {exc}") from None
    manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
            for name, data in [(MANIFEST, manifest_bytes), *members.items()]:
                zf.writestr(_aligned_info(name, raw.tell()), data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
