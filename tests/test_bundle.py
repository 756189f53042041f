"""Model bundles: alignment, verification, and every kind of bad input refused with a clear message."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from converters.bundle_writer import _aligned_info, write_bundle
from sdk_python.bundle import BundleError, open_bundle, verify_bundle


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
    assert verify_bundle(bundle)["format_version"] == "1.0"


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


def test_corrupted_and_truncated_bundles_are_refused(bundle, tmp_path):
    garbage = tmp_path / "g.swiftavatar"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(BundleError, match="corrupted or truncated"):
        open_bundle(garbage)
    truncated = tmp_path / "t.swiftavatar"
    truncated.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    with pytest.raises(BundleError, match="corrupted or truncated"):
        open_bundle(truncated)
    # flipped bytes inside a member's data: CRC and hash both catch it
    raw = bytearray(bundle.read_bytes())
    with open_bundle(bundle) as b:
        off = b.data_offset("estimator_fp16.tflite")
    raw[off + 10] ^= 0xFF
    flipped = tmp_path / "f.swiftavatar"
    flipped.write_bytes(bytes(raw))
    with open_bundle(flipped) as b, pytest.raises(BundleError, match="estimator_fp16.tflite"):
        b.verify()
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(tmp_path / "nope.swiftavatar")


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
                     lambda n, d: (n, d.replace(b'"1.0"', b'"1.7"')) if n == "manifest.json" else (n, d))
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
