"""Model bundles: alignment, verification, and every kind of bad input refused with a clear message."""
from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from converters.bundle_writer import _aligned_info, write_bundle
from sdk_python import contract
from sdk_python.bundle import BundleDamagedError, BundleError, ManifestError, open_bundle, verify_bundle


def _manifest(**over):
    m = {"created_by": "test", "engine": "alter", "schema": {"engine": "alter"},
         "input": {"size": 32, "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}},
         "outputs": {"logits_glasses": {"kind": "discrete", "parameter": "glasses"}},
         "models": [{"format": "onnx", "precision": "fp32", "file": "estimator.onnx"},
                    {"format": "tflite", "precision": "fp16", "file": "estimator_fp16.tflite"}],
         "face_detector": None}
    m.update(over)
    return m


def _members():
    # odd sizes and names so that unaligned offsets would occur without padding
    return {"estimator.onnx": b"onnx" * 1001 + b"x", "estimator_fp16.tflite": bytes(range(7)) * 333,
            "schema.json": b'{"engine": "alter"}'}


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "a.swiftavatar"
    write_bundle(path, _manifest(), _members())
    return path


def _rewrite(src: Path, dst: Path, edit):
    """Copy a zip, passing (name, data) through ``edit`` (returns None to drop, or (name, data))."""
    with zipfile.ZipFile(src) as zin, open(dst, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            got = edit(info.filename, zin.read(info.filename))
            if got is not None:
                zout.writestr(_aligned_info(got[0], raw.tell()), got[1])
    return dst


def test_members_stored_and_4_byte_aligned(bundle):
    with zipfile.ZipFile(bundle) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    with open_bundle(bundle) as b:
        offsets = {n: b.data_offset(n) for n in b.names}
        assert all(o % 4 == 0 for o in offsets.values()), offsets
        # the data really starts there: a phone can mmap it
        raw = bundle.read_bytes()
        for n in b.names:
            data = b.read(n) if n != "manifest.json" else None
            if data:
                assert raw[offsets[n]:offsets[n] + len(data)] == data
        results = b.verify()
    assert all(r.ok for r in results)
    assert verify_bundle(bundle)["format_version"] == contract.BUNDLE_FORMAT_VERSION


def test_missing_format_is_refused(bundle, tmp_path):
    with open_bundle(bundle) as b:
        assert b.model("onnx")["file"] == "estimator.onnx"
        with pytest.raises(BundleError, match=r"no tflite:int8 model .*has: onnx:fp32, tflite:fp16"):
            b.model("tflite", "int8")
    # a manifest that lists a model the archive lacks
    bad = _rewrite(bundle, tmp_path / "b.swiftavatar", lambda n, d: None if n == "estimator_fp16.tflite" else (n, d))
    with open_bundle(bad) as b, pytest.raises(BundleError, match="missing format: estimator_fp16.tflite"):
        b.verify()


def test_hash_mismatch_is_refused(bundle, tmp_path):
    bad = _rewrite(bundle, tmp_path / "b.swiftavatar",
                   lambda n, d: (n, d[:-1] + b"\x00") if n == "estimator.onnx" else (n, d))
    with open_bundle(bad) as b:
        with pytest.raises(BundleError, match="estimator.onnx.*does not match its sha256"):
            b.read("estimator.onnx")
        with pytest.raises(BundleError, match="member estimator.onnx: sha256 mismatch"):
            b.verify()


def _refused(path, error, match):
    """Opening *and* verifying ``path`` raises ``error`` whose message names the file exactly once."""
    with pytest.raises(error, match=match) as info:
        with open_bundle(path) as b:
            b.verify()
    assert str(info.value).count(str(path)) == 1, str(info.value)
    return info.value


def test_random_bytes_are_refused(tmp_path):
    garbage = tmp_path / "g.swiftavatar"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _refused(garbage, BundleDamagedError, "not a zip archive")
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(tmp_path / "nope.swiftavatar")
    with pytest.raises(BundleError, match="not a file"):
        open_bundle(tmp_path)


@pytest.mark.parametrize("n", [1, 100, 70_000])
def test_appended_bytes_are_refused_and_counted(bundle, tmp_path, n):
    bad = tmp_path / "app.swiftavatar"
    bad.write_bytes(bundle.read_bytes() + b"\x00" * n)
    if n < 65_000:  # zipfile itself happily opens this file: the envelope check is what refuses it
        with zipfile.ZipFile(bad) as zf:
            assert "estimator.onnx" in zf.namelist()
    _refused(bad, BundleDamagedError, f"{n} unexpected bytes appended")


@pytest.mark.parametrize("n", [1, 3, 4096])
def test_prepended_bytes_are_refused_and_counted(bundle, tmp_path, n):
    bad = tmp_path / "pre.swiftavatar"
    bad.write_bytes(b"\x7f" * n + bundle.read_bytes())
    with zipfile.ZipFile(bad) as zf:  # zipfile tolerates it (self-extracting archives)
        assert zf.read("schema.json")
    _refused(bad, BundleDamagedError, f"{n} unexpected bytes prepended")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_bundle_is_refused(bundle, tmp_path, keep):
    bad = tmp_path / "t.swiftavatar"
    data = bundle.read_bytes()
    bad.write_bytes(data[: int(len(data) * keep)])
    _refused(bad, BundleDamagedError, "truncated")


@pytest.mark.parametrize("where", ["estimator_fp16.tflite", "estimator.onnx", "schema.json"])
def test_a_flipped_byte_in_a_member_is_refused(bundle, tmp_path, where):
    raw = bytearray(bundle.read_bytes())
    with open_bundle(bundle) as b:
        off = b.data_offset(where)
    raw[off + 3] ^= 0xFF
    bad = tmp_path / "f.swiftavatar"
    bad.write_bytes(bytes(raw))
    err = _refused(bad, BundleDamagedError, f"member {where}: sha256 mismatch")
    with open_bundle(bad) as b, pytest.raises(BundleDamagedError, match=f"{where}.*does not match its sha256"):
        b.read(where)
    assert isinstance(err, BundleError)


def _edit_manifest(bundle, dst, change):
    def edit(n, d):
        if n != "manifest.json":
            return n, d
        m = json.loads(d)
        change(m)
        return n, json.dumps(m).encode()
    return _rewrite(bundle, dst, edit)


def _set(path, value):
    def change(m):
        *parents, last = path
        node = m
        for k in parents:
            node = node[k]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return change


_DELETE = object()
MALFORMED = [
    (("members",), ["estimator.onnx"], "members"),
    (("members", "estimator.onnx"), "abc", "members.estimator.onnx"),
    (("members", "estimator.onnx", "sha256"), "xyz", "members.estimator.onnx.sha256"),
    (("members", "estimator.onnx", "size"), "12", "members.estimator.onnx.size"),
    (("models",), {"onnx": "estimator.onnx"}, "models"),
    (("models", 0), "estimator.onnx", "models[0]"),
    (("models", 0, "file"), 3, "models[0].file"),
    (("models", 0, "file"), "not-there.onnx", "models[0].file"),
    (("models", 1, "format"), _DELETE, "models[1].format"),
    (("models", 0, "parity"), "validated", "models[0].parity"),
    (("models", 0, "output_map"), ["a"], "models[0].output_map"),
    (("engine",), 7, "engine"),
    (("schema",), "alter", "schema"),
    (("input",), _DELETE, "input"),
    (("input", "size"), "32", "input.size"),
    (("input", "normalization", "mean"), [0.5, 0.5], "input.normalization.mean"),
    (("input", "normalization", "std"), [0, 1, 1], "input.normalization.std"),
    (("outputs",), [], "outputs"),
    (("outputs", "logits_glasses", "kind"), "both", "outputs.logits_glasses.kind"),
    (("outputs", "logits_glasses"), _DELETE, "outputs"),
    (("face_detector",), "face.tflite", "face_detector"),
    (("face_detector",), {"file": "missing.tflite"}, "face_detector.file"),
    (("format_version",), 1, "format_version"),
    (("format",), "zip", "format"),
    (("warnings",), "none", "warnings"),
]


@pytest.mark.parametrize("path,value,field", MALFORMED, ids=[m[2] + f"-{i}" for i, m in enumerate(MALFORMED)])
def test_each_malformed_manifest_field_is_a_typed_error_naming_it(bundle, tmp_path, path, value, field):
    bad = _edit_manifest(bundle, tmp_path / "m.swiftavatar", _set(path, value))
    err = _refused(bad, ManifestError, re.escape(f"'{field}'"))
    assert err.field == field
    # the writer runs the same checks: such a manifest is never written
    m = _manifest()
    m["members"] = {n: {"sha256": "0" * 64, "size": len(d)} for n, d in _members().items()}
    try:
        _set(path, value)(m)
    except (KeyError, IndexError, TypeError):
        return
    if path[0] not in ("members", "format", "format_version"):  # the writer sets those itself
        with pytest.raises(ValueError, match=re.escape(f"'{field}'")):
            write_bundle(tmp_path / "w.swiftavatar", {k: v for k, v in m.items() if k != "members"}, _members())


def test_a_model_in_a_subfolder_works(tmp_path):
    members = {"models/onnx/estimator.onnx": b"onnx" * 10, "schema.json": b"{}"}
    manifest = _manifest(models=[{"format": "onnx", "precision": "fp32", "file": "models/onnx/estimator.onnx"}])
    path = write_bundle(tmp_path / "n.swiftavatar", manifest, members) and tmp_path / "n.swiftavatar"
    with open_bundle(path) as b:
        b.verify()
        assert b.read("models/onnx/estimator.onnx") == b"onnx" * 10
    from sdk_python.model_source import open_model_source
    src = open_model_source(path)
    model = src.files.models["onnx"]
    assert model.path is None and model.read_bytes() == b"onnx" * 10
    local, keep = model.local_path()
    assert local.read_bytes() == b"onnx" * 10 and local.parent == Path(keep.name)


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "models/../../evil", "C:/evil", "a\\..\\evil"])
def test_member_escaping_the_archive_is_refused(bundle, tmp_path, name):
    bad = _rewrite(bundle, tmp_path / "e.swiftavatar", lambda n, d: (n, d))
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr(name, b"boom")
    with pytest.raises(BundleError, match="escapes the archive"):
        open_bundle(bad)


def test_unknown_major_version_is_refused(bundle, tmp_path):
    def bump(n, d):
        if n == "manifest.json":
            m = json.loads(d)
            m["format_version"] = "2.0"
            return n, json.dumps(m).encode()
        return n, d
    bad = _rewrite(bundle, tmp_path / "v.swiftavatar", bump)
    with pytest.raises(BundleError, match=r"unknown major format version 2.0 \(this reader supports 1.x\)"):
        open_bundle(bad)
    minor = _rewrite(bundle, tmp_path / "m.swiftavatar",
                     lambda n, d: (n, d.replace(f'"{contract.BUNDLE_FORMAT_VERSION}"'.encode(), b'"1.7"')) if n == "manifest.json" else (n, d))
    with open_bundle(minor) as b:  # a newer minor version still opens
        assert b.manifest["format_version"] == "1.7"


def test_bad_manifest_is_refused(bundle, tmp_path):
    no_manifest = _rewrite(bundle, tmp_path / "n.swiftavatar", lambda n, d: None if n == "manifest.json" else (n, d))
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(no_manifest)
    not_json = _rewrite(bundle, tmp_path / "j.swiftavatar", lambda n, d: (n, b"{nope") if n == "manifest.json" else (n, d))
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(not_json)


def test_reader_never_unpickles(bundle, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the bundle reader must never unpickle")
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(np, "load", boom)
    verify_bundle(bundle)
    src = Path(sys.modules["sdk_python.bundle"].__file__).read_text()
    assert "pickle" not in src.replace("never unpickles", "") and "np.load" not in src


def test_sdk_reader_imports_without_torch_tensorflow_coremltools(bundle):
    code = ("import sys\nfor m in ('torch', 'tensorflow', 'coremltools', 'onnx2tf'): sys.modules[m] = None\n"
            f"from sdk_python.bundle import verify_bundle\nprint(verify_bundle({str(bundle)!r})['engine'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "alter"


def test_cli_inspect_and_verify(bundle, tmp_path):
    cli = [sys.executable, "-m", "toolchain.cli.main"]
    ok = subprocess.run([*cli, "bundle", "verify", str(bundle)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "verified" in ok.stdout and "no face detector" in ok.stderr
    shown = subprocess.run([*cli, "bundle", "inspect", str(bundle)], capture_output=True, text=True,
                           env={**__import__("os").environ, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "estimator_fp16.tflite" in shown.stdout and "logits_glasses" in shown.stdout
    bad = _rewrite(bundle, tmp_path / "b.swiftavatar",
                   lambda n, d: (n, d[:-1] + b"\x00") if n == "estimator.onnx" else (n, d))
    res = subprocess.run([*cli, "bundle", "verify", str(bad)], capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "200"})
    assert res.returncode == 1
    assert "sha256 mismatch" in res.stderr
