"""Read and verify ``*.swiftavatar`` model bundles (standard library + numpy only; never unpickles).

A bundle is a zip whose members are stored uncompressed at 4-byte-aligned offsets, with a
``manifest.json`` describing the engine schema, input normalisation, output names → parameters and
one entry per model file (format, precision, sha256, quantization, parity). :func:`open_bundle`
checks the archive's structure and the manifest version; :meth:`Bundle.verify` (or
:func:`verify_bundle`) also hashes every member. Every problem raises :class:`BundleError` with a
message naming the file and what is wrong.

Example::

    with open_bundle("alter.swiftavatar") as b:
        b.verify()
        entry = b.model("tflite", "int8")
        data = b.read(entry["file"])
"""
from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

BUNDLE_FORMAT = "swiftavatar-bundle"
SUPPORTED_MAJOR = 1
ALIGNMENT = 4
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """The bundle is invalid: corrupted, truncated, tampered with, unsafe or of an unknown version."""


def _safe_member(name: str) -> bool:
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return False
    return ".." not in PurePosixPath(name).parts


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


class Bundle:
    """An open bundle. Use :func:`open_bundle`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._zf = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise BundleError(f"{self.path}: no such file") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BundleError(f"{self.path} is not a readable .swiftavatar bundle (corrupted or truncated zip: {exc})") from None
        try:
            self._check_structure()
            self.manifest = self._read_manifest()
        except BaseException:
            self._zf.close()
            raise

    # ----- structure ------------------------------------------------------------------------------
    def _check_structure(self) -> None:
        infos = self._zf.infolist()
        names = [i.filename for i in infos]
        for n in names:
            if not _safe_member(n):
                raise BundleError(f"{self.path}: member {n!r} escapes the archive (absolute path or '..'): refusing it")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BundleError(f"{self.path}: duplicate members {dupes}")
        if MANIFEST not in names:
            raise BundleError(f"{self.path}: no {MANIFEST} (not a .swiftavatar bundle, or truncated)")

    def _read_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self._read_raw(MANIFEST).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{self.path}: {MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{self.path}: {MANIFEST} does not describe a {BUNDLE_FORMAT}")
        version = str(manifest.get("format_version", ""))
        try:
            major = int(version.split(".")[0])
        except ValueError:
            raise BundleError(f"{self.path}: bad format_version {version!r}") from None
        if major != SUPPORTED_MAJOR:
            raise BundleError(f"{self.path}: unknown major format version {version} (this reader supports "
                              f"{SUPPORTED_MAJOR}.x); update the SDK or re-export the bundle")
        for key in ("engine", "schema", "input", "outputs", "models", "members"):
            if key not in manifest:
                raise BundleError(f"{self.path}: {MANIFEST} lacks '{key}'")
        return manifest

    def _read_raw(self, name: str) -> bytes:
        try:
            return self._zf.read(name)
        except KeyError:
            raise BundleError(f"{self.path}: no member {name!r}") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise BundleError(f"{self.path}: member {name!r} is corrupted or truncated ({exc})") from None

    # ----- access ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self._zf.namelist()

    @property
    def has_face_detector(self) -> bool:
        return bool(self.manifest.get("face_detector"))

    def read(self, name: str) -> bytes:
        """A member's bytes, checked against the manifest's sha256."""
        entry = self.manifest["members"].get(name)
        if entry is None:
            raise BundleError(f"{self.path}: {name!r} is not listed in the manifest")
        data = self._read_raw(name)
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise BundleError(f"{self.path}: member {name!r} does not match its sha256 in the manifest (modified or corrupted)")
        return data

    def model(self, fmt: str, precision: str | None = None) -> dict[str, Any]:
        """The manifest entry of a model; raises if the bundle has no such format/precision."""
        hits = [m for m in self.manifest["models"]
                if m.get("format") == fmt and (precision is None or m.get("precision") == precision)]
        if not hits:
            have = ", ".join(f"{m.get('format')}:{m.get('precision')}" for m in self.manifest["models"]) or "none"
            want = fmt + (f":{precision}" if precision else "")
            raise BundleError(f"{self.path}: no {want} model in this bundle (it has: {have})")
        return hits[0]

    def data_offset(self, name: str) -> int:
        """Byte offset of a member's data in the file (for mmap)."""
        info = self._zf.getinfo(name)
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise BundleError(f"{self.path}: bad local header for {name!r} (corrupted or truncated)")
        n_name, n_extra = struct.unpack("<HH", header[26:30])
        return info.header_offset + 30 + n_name + n_extra

    # ----- verification ---------------------------------------------------------------------------
    def checks(self) -> list[CheckResult]:
        """Every check, passed or not (``verify`` raises on the first failure)."""
        out = [CheckResult("format version", True, str(self.manifest["format_version"]))]
        listed = self.manifest["members"]
        present = set(self.names)
        for m in self.manifest["models"]:
            f = m.get("file")
            out.append(CheckResult(f"model {m.get('format')}:{m.get('precision')}", f in present and f in listed,
                                   f if f in present else f"missing format: {f} is listed but not in the archive"))
        det = self.manifest.get("face_detector")
        if det:
            out.append(CheckResult("face detector", det.get("file") in present, det.get("file", "")))
        for name, entry in listed.items():
            if name not in present:
                out.append(CheckResult(f"member {name}", False, "listed in the manifest but missing from the archive"))
                continue
            info = self._zf.getinfo(name)
            if info.compress_type != zipfile.ZIP_STORED:
                out.append(CheckResult(f"member {name}", False, "compressed (bundles store members uncompressed)"))
                continue
            off = self.data_offset(name)
            if off % ALIGNMENT:
                out.append(CheckResult(f"member {name}", False, f"data offset {off} is not {ALIGNMENT}-byte aligned"))
                continue
            try:
                data = self._read_raw(name)
            except BundleError as exc:
                out.append(CheckResult(f"member {name}", False, str(exc)))
                continue
            ok = hashlib.sha256(data).hexdigest() == entry.get("sha256") and len(data) == entry.get("size")
            out.append(CheckResult(f"member {name}", ok, "sha256 ok" if ok else "sha256 mismatch (modified or corrupted)"))
        extra = sorted(present - set(listed) - {MANIFEST})
        if extra:
            out.append(CheckResult("unlisted members", False, ", ".join(extra)))
        return out

    def verify(self) -> list[CheckResult]:
        """Run :meth:`checks`; raise :class:`BundleError` naming every failure."""
        results = self.checks()
        bad = [r for r in results if not r.ok]
        if bad:
            raise BundleError(f"{self.path}: " + "; ".join(f"{r.name}: {r.detail}" for r in bad))
        return results

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_bundle(path: str | Path) -> Bundle:
    """Open a bundle, checking its structure and manifest version (not yet the member hashes)."""
    return Bundle(path)


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Open and fully verify a bundle; returns its manifest."""
    with open_bundle(path) as b:
        b.verify()
        return b.manifest
