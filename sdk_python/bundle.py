"""Read and verify ``*.swiftavatar`` model bundles (standard library only; never unpickles).

A bundle is a zip whose members are stored uncompressed at 4-byte-aligned offsets, with a
``manifest.json`` describing the engine schema, input normalisation, output names → parameters and
one entry per model file (format, precision, parity, the exporter's record). The layout is the model
contract's (:mod:`sdk_python.contract`).

:func:`open_bundle` checks the envelope (nothing appended or prepended, not truncated), the archive's
structure and every manifest field, and reads nothing else; :meth:`Bundle.read` reads *one* member by its
offset and checks its sha256, so an estimator touches only the model it runs. :meth:`Bundle.verify` (or
:func:`verify_bundle`) hashes every member. Problems raise a :class:`~sdk_python.errors.BundleError`
subclass naming the file once: :class:`BundleDamagedError` (bytes changed, added or missing),
:class:`ManifestError` (a malformed field, named in ``.field``), :class:`BundleVersionError`.

Example::

    with open_bundle("alter.swiftavatar") as b:
        entry = b.model("tflite", "int8")
        data = b.read(entry["file"])
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from . import contract
from .errors import BundleDamagedError, BundleError, BundleVersionError, ManifestError

MANIFEST = contract.MANIFEST
ALIGNMENT = contract.ALIGNMENT
SUPPORTED_MAJOR = contract.SUPPORTED_BUNDLE_MAJOR

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_LOCAL = b"PK\x03\x04"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

__all__ = ["Bundle", "BundleError", "BundleDamagedError", "ManifestError", "BundleVersionError", "CheckResult",
           "Member", "open_bundle", "verify_bundle", "check_manifest"]


def _safe_member(name: str) -> bool:
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return False
    return ".." not in PurePosixPath(name).parts


# ----- manifest fields ----------------------------------------------------------------------------------
def _field(cond: bool, field: str, want: str, got: Any) -> None:
    if not cond:
        shown = type(got).__name__ if not isinstance(got, (str, int, float)) or isinstance(got, bool) else repr(got)
        raise ManifestError(f"{MANIFEST} field '{field}' must be {want}, got {shown[:80]}: the bundle was edited "
                            "or written by another tool; re-export it with `avatartool export`", field)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v: Any, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def check_manifest(m: Any) -> dict[str, Any]:
    """Check every manifest field the SDK relies on; raise :class:`ManifestError` naming the first bad one."""
    _field(isinstance(m, dict), "(top level)", "a JSON object", m)
    _field(m.get("format") == contract.BUNDLE_FORMAT, "format", f"'{contract.BUNDLE_FORMAT}'", m.get("format"))
    version = m.get("format_version")
    _field(isinstance(version, str) and re.fullmatch(r"\d+\.\d+", version or "") is not None, "format_version",
           "a version string 'MAJOR.MINOR'", version)
    major = int(version.split(".")[0])
    if major != SUPPORTED_MAJOR:
        raise BundleVersionError(f"unknown major format version {version} (this reader supports {SUPPORTED_MAJOR}.x): "
                                 + ("upgrade the SDK (pip install -U swiftavatar[sdk])" if major > SUPPORTED_MAJOR
                                    else "re-export the model with a current avatartool"))
    _field(isinstance(m.get("engine"), str) and bool(m.get("engine")), "engine", "a non-empty string", m.get("engine"))
    _field(isinstance(m.get("schema"), dict), "schema", "an object (the engine's parameter schema)", m.get("schema"))
    inp = m.get("input")
    _field(isinstance(inp, dict), "input", "an object", inp)
    _field(_is_int(inp.get("size")) and inp["size"] > 0, "input.size", "a positive integer", inp.get("size"))
    norm = inp.get("normalization")
    _field(isinstance(norm, dict), "input.normalization", "an object with mean and std", norm)
    for k in ("mean", "std"):
        _field(_numbers(norm.get(k), 3), f"input.normalization.{k}", "a list of 3 numbers", norm.get(k))
    _field(all(s != 0 for s in norm["std"]), "input.normalization.std", "non-zero numbers", norm["std"])
    outs = m.get("outputs")
    _field(isinstance(outs, dict) and bool(outs), "outputs", "a non-empty object {output name: description}", outs)
    for name, o in outs.items():
        f = f"outputs.{name}"
        _field(isinstance(o, dict), f, "an object", o)
        _field(o.get("kind") in ("continuous", "discrete"), f + ".kind", "'continuous' or 'discrete'", o.get("kind"))
        if o["kind"] == "discrete":
            _field(isinstance(o.get("parameter"), str), f + ".parameter", "a parameter name", o.get("parameter"))
        else:
            _field(isinstance(o.get("parameters"), list), f + ".parameters", "a list of parameter names",
                   o.get("parameters"))
    members = m.get("members")
    _field(isinstance(members, dict), "members", "an object {member name: {sha256, size}}", members)
    for name, e in members.items():
        f = f"members.{name}"
        _field(_safe_member(name), f, "a relative path inside the archive", name)
        _field(isinstance(e, dict), f, "an object {sha256, size}", e)
        _field(isinstance(e.get("sha256"), str) and _SHA256.match(e["sha256"]) is not None, f + ".sha256",
               "64 lowercase hex digits", e.get("sha256"))
        _field(_is_int(e.get("size")) and e["size"] >= 0, f + ".size", "a non-negative integer", e.get("size"))
    models = m.get("models")
    _field(isinstance(models, list), "models", "a list of model entries", models)
    for i, e in enumerate(models):
        f = f"models[{i}]"
        _field(isinstance(e, dict), f, "an object {format, precision, file, ...}", e)
        for k in ("format", "precision", "file"):
            _field(isinstance(e.get(k), str) and bool(e.get(k)), f"{f}.{k}", "a non-empty string", e.get(k))
        _field(e["file"] in members, f"{f}.file", "a member listed in 'members'", e["file"])
        _field(e.get("parity") is None or isinstance(e["parity"], dict), f"{f}.parity", "an object", e.get("parity"))
        if e.get("parity") is not None:
            st = e["parity"].get("status")
            _field(st is None or isinstance(st, str), f"{f}.parity.status", "a status word", st)
        for k in ("output_map", "quantization"):
            _field(e.get(k) is None or isinstance(e[k], dict), f"{f}.{k}", "an object", e.get(k))
        _field(e.get("outputs") is None or isinstance(e["outputs"], list), f"{f}.outputs", "a list of output names",
               e.get("outputs"))
    det = m.get("face_detector")
    _field(det is None or isinstance(det, dict), "face_detector", "an object or null", det)
    if det is not None:
        _field(isinstance(det.get("file"), str) and det.get("file") in members, "face_detector.file",
               "a member listed in 'members'", det.get("file"))
    dets = m.get("face_detectors")
    _field(dets is None or isinstance(dets, dict), "face_detectors", "an object {detector mode: detector}", dets)
    for kind, d in (dets or {}).items():
        _field(isinstance(d, dict) and isinstance(d.get("file"), str) and d.get("file") in members,
               f"face_detectors.{kind}.file", "a member listed in 'members'", d.get("file") if isinstance(d, dict) else d)
    for k in ("parity", "warnings"):
        _field(m.get(k) is None or isinstance(m[k], list), k, "a list", m.get(k))
    eng = m.get(contract.ENGINE_SPEC_FIELD)
    f = contract.ENGINE_SPEC_FIELD
    _field(eng is None or isinstance(eng, dict), f, "an object or null", eng)
    if eng is not None:
        _field(isinstance(eng.get("spec"), str) and bool(eng.get("spec")), f + ".spec", "a non-empty engine spec",
               eng.get("spec"))
        _field(eng.get("kind") in contract.ENGINE_SPEC_KINDS, f + ".kind", " or ".join(contract.ENGINE_SPEC_KINDS),
               eng.get("kind"))
        for k in ("cwd", "name", "host", "plugin"):
            _field(eng.get(k) is None or isinstance(eng[k], str), f"{f}.{k}", "a string or null", eng.get(k))
        _field(eng["kind"] != "cmd" or isinstance(eng.get("cwd"), str), f + ".cwd",
               "the folder the command ran in (a string)", eng.get("cwd"))
    cal = m.get("confidence_calibration")
    _field(cal is None or isinstance(cal, dict), "confidence_calibration", "an object or null", cal)
    if cal is not None:
        temps = cal.get("temperatures")
        _field(isinstance(temps, dict), "confidence_calibration.temperatures", "an object {parameter: temperature}", temps)
        for name, t in temps.items():
            _field(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0,
                   f"confidence_calibration.temperatures.{name}", "a positive number", t)
    return m


# ----- the reader -------------------------------------------------------------------------------------
@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Member:
    """Where one stored member's bytes are in the bundle file, and the sha256 they must have."""

    bundle: Path
    name: str
    offset: int
    size: int
    sha256: str

    def read(self) -> bytes:
        """The member's bytes, read by offset; raises :class:`BundleDamagedError` if they do not match."""
        try:
            with open(self.bundle, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as exc:
            raise BundleError(f"{self.bundle}: cannot read member {self.name!r} ({exc})") from None
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise BundleDamagedError(f"{self.bundle}: member {self.name!r} does not match its sha256 in the manifest "
                                     "(modified or corrupted): re-download or re-export the bundle")
        return data


class Bundle:
    """An open bundle. Use :func:`open_bundle`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise BundleError(f"{self.path}: no such file" if not self.path.exists()
                              else f"{self.path}: not a file (a bundle is one .swiftavatar file)")
        self.file_size = self.path.stat().st_size
        self._check_envelope()
        try:
            self._zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BundleDamagedError(f"{self.path}: not a readable .swiftavatar bundle (corrupted zip: {exc}); "
                                     "re-download or re-export it") from None
        try:
            self._check_structure()
            self.manifest = self._read_manifest()
        except BaseException:
            self._zf.close()
            raise

    # ----- envelope and structure -----------------------------------------------------------------------
    def _damaged(self, what: str) -> BundleDamagedError:
        return BundleDamagedError(f"{self.path}: {what}; re-download or re-export the bundle")

    def _check_envelope(self) -> None:
        """The end-of-central-directory record must end the file and the archive must start at byte 0.

        ``zipfile`` tolerates both bytes after the archive and bytes before it (self-extracting archives);
        a bundle must not, since a phone maps members by the offsets the archive records.
        """
        with open(self.path, "rb") as f:
            head = f.read(4)
            tail_len = min(self.file_size, _EOCD_SIZE + 0xFFFF)
            f.seek(self.file_size - tail_len)
            tail = f.read(tail_len)
        at = tail.rfind(_EOCD)
        while at >= 0 and at + _EOCD_SIZE > len(tail):
            at = tail.rfind(_EOCD, 0, at)
        if at < 0:
            # Error path only: look through the whole file, so that many appended bytes are named as such.
            whole = self.path.read_bytes()
            found = whole.rfind(_EOCD, 0, max(0, self.file_size - tail_len + _EOCD_SIZE))
            if found < 0 or found + _EOCD_SIZE > self.file_size:
                raise self._damaged(f"truncated or not a zip archive (no end-of-central-directory record in its "
                                    f"{self.file_size} bytes)")
            comment_len = struct.unpack("<H", whole[found + 20:found + 22])[0]
            raise self._damaged(f"{self.file_size - (found + _EOCD_SIZE + comment_len)} unexpected bytes appended "
                                f"after the end of the archive (it ends at byte {found + _EOCD_SIZE + comment_len})")
        eocd_offset = self.file_size - tail_len + at
        (_, _, _, _, _, cd_size, cd_offset, comment_len) = struct.unpack("<4sHHHHIIH", tail[at:at + _EOCD_SIZE])
        end = eocd_offset + _EOCD_SIZE + comment_len
        if end < self.file_size:
            raise self._damaged(f"{self.file_size - end} unexpected bytes appended after the end of the archive "
                                f"(it ends at byte {end})")
        if end > self.file_size:
            raise self._damaged(f"truncated: the end-of-central-directory record needs {end} bytes, the file has "
                                f"{self.file_size}")
        if eocd_offset >= 20 and tail[max(0, at - 20):at][:4] == _ZIP64_LOCATOR:
            return  # zip64: offsets live in the zip64 record; the first-header check below still applies
        shift = eocd_offset - (cd_offset + cd_size)
        if shift > 0:
            raise self._damaged(f"{shift} unexpected bytes prepended before the archive (its first local header "
                                f"should be at byte 0)")
        if shift < 0:
            raise self._damaged(f"truncated or overwritten: the central directory ({cd_size} bytes at {cd_offset}) "
                                f"runs past the end record at {eocd_offset}")
        if head != _LOCAL:
            raise self._damaged("the file does not start with a zip local header (bytes prepended or overwritten)")

    def _check_structure(self) -> None:
        names = [i.filename for i in self._zf.infolist()]
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
            raise ManifestError(f"{self.path}: {MANIFEST} is not valid JSON ({exc})", "(top level)") from None
        try:
            return check_manifest(manifest)
        except BundleError as exc:
            raise type(exc)(f"{self.path}: {exc}", *exc.args[1:]) from None

    def _read_raw(self, name: str) -> bytes:
        try:
            return self._zf.read(name)
        except KeyError:
            raise BundleError(f"{self.path}: no member {name!r}") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise self._damaged(f"member {name!r} is corrupted or truncated ({exc})") from None

    # ----- access ---------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self._zf.namelist()

    @property
    def has_face_detector(self) -> bool:
        return bool(self.manifest.get("face_detector"))

    def member(self, name: str) -> Member:
        """Where a listed member's data lies (checked: present, stored, aligned, within the file)."""
        entry = self.manifest["members"].get(name)
        if entry is None:
            raise BundleError(f"{self.path}: {name!r} is not listed in the manifest")
        try:
            info = self._zf.getinfo(name)
        except KeyError:
            raise self._damaged(f"member {name!r} is listed in the manifest but missing from the archive") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise self._damaged(f"member {name!r} is compressed (bundles store members uncompressed)")
        offset = self.data_offset(name)
        if info.file_size != entry["size"] or offset + entry["size"] > self.file_size:
            raise self._damaged(f"member {name!r} is {info.file_size} bytes in the archive, {entry['size']} in the "
                                "manifest, or runs past the end of the file")
        return Member(self.path, name, offset, entry["size"], entry["sha256"])

    def read(self, name: str) -> bytes:
        """A member's bytes, read by offset and checked against the manifest's sha256."""
        return self.member(name).read()

    def model(self, fmt: str, precision: str | None = None) -> dict[str, Any]:
        """The manifest entry of a model; raises if the bundle has no such format/precision."""
        hits = [m for m in self.manifest["models"]
                if m["format"] == fmt and (precision is None or m["precision"] == precision)]
        if not hits:
            have = ", ".join(f"{m['format']}:{m['precision']}" for m in self.manifest["models"]) or "none"
            want = fmt + (f":{precision}" if precision else "")
            raise BundleError(f"{self.path}: no {want} model in this bundle (it has: {have})")
        return hits[0]

    def data_offset(self, name: str) -> int:
        """Byte offset of a member's data in the file (for mmap)."""
        info = self._zf.getinfo(name)
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)
            n_name, n_extra = struct.unpack("<HH", header[26:30]) if len(header) == 30 else (0, 0)
            stored_name = f.read(n_name)
        if len(header) < 30 or header[:4] != _LOCAL or stored_name.decode("utf-8", "replace") != name:
            raise self._damaged(f"bad local header for member {name!r}")
        return info.header_offset + 30 + n_name + n_extra

    # ----- verification ---------------------------------------------------------------------------------
    def checks(self) -> list[CheckResult]:
        """Every check, passed or not (``verify`` raises on the first failure)."""
        out = [CheckResult("envelope", True, f"{self.file_size} bytes, nothing appended or prepended"),
               CheckResult("format version", True, str(self.manifest["format_version"]))]
        listed = self.manifest["members"]
        present = set(self.names)
        for m in self.manifest["models"]:
            f = m["file"]
            out.append(CheckResult(f"model {m['format']}:{m['precision']}", f in present,
                                   f if f in present else f"missing format: {f} is listed but not in the archive"))
        det = self.manifest.get("face_detector")
        if det:
            out.append(CheckResult("face detector", det["file"] in present, det["file"]))
        for name in listed:
            if name not in present:
                out.append(CheckResult(f"member {name}", False, "listed in the manifest but missing from the archive"))
                continue
            try:
                mem = self.member(name)
                if mem.offset % ALIGNMENT:
                    out.append(CheckResult(f"member {name}", False, f"data offset {mem.offset} is not {ALIGNMENT}-byte aligned"))
                    continue
                mem.read()
            except BundleError as exc:
                detail = str(exc).removeprefix(f"{self.path}: ")
                out.append(CheckResult(f"member {name}", False,
                                       "sha256 mismatch (modified or corrupted)" if "sha256" in detail else detail))
                continue
            out.append(CheckResult(f"member {name}", True, "sha256 ok"))
        extra = sorted(present - set(listed) - {MANIFEST})
        if extra:
            out.append(CheckResult("unlisted members", False, ", ".join(extra)))
        return out

    def verify(self) -> list[CheckResult]:
        """Run :meth:`checks`; raise :class:`BundleDamagedError` naming every failure (and the file once)."""
        results = self.checks()
        bad = [r for r in results if not r.ok]
        if bad:
            raise BundleDamagedError(f"{self.path}: " + "; ".join(f"{r.name}: {r.detail}" for r in bad))
        return results

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_bundle(path: str | Path) -> Bundle:
    """Open a bundle, checking its envelope, structure and manifest (not yet the member hashes)."""
    return Bundle(path)


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Open and fully verify a bundle; returns its manifest."""
    with open_bundle(path) as b:
        b.verify()
        return b.manifest


def extract_member(member: Member, dest_dir: str | Path) -> Path:
    """Write one member to ``dest_dir`` under its base name (for runtimes that want a file)."""
    dest = Path(dest_dir) / PurePosixPath(member.name).name
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(member.read())
    os.replace(tmp, dest)
    return dest


def optional_member(b: Bundle, name: Optional[str]) -> Optional[Member]:
    return None if not name else b.member(name)
