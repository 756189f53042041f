"""Bundles know their engine: the export records how the engine was started, `predict --render` starts it again,
`--engine` overrides it, and an external command from a bundle made elsewhere never runs without being asked."""
from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from converters.export import ExportOptions, export_model
from converters.formats import parse_targets
from sdk_python.bundle import check_manifest, open_bundle
from sdk_python.errors import ManifestError
from toolchain.cli.predict import predict_files
from toolchain.engines.bundle_engine import engine_record, made_here, open_bundle_engine, trust_file
from toolchain.errors import AvatarToolError
from toolchain.schema import AvatarSchema

from ._cli import run_cli

REPO = Path(__file__).resolve().parents[1]
# relative to the repository root, as a user would type it there: the recorded working folder matters
BADGE_CMD = f"cmd:{sys.executable} examples/external_engine/badge_engine.py"


@pytest.fixture(scope="module")
def badge_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """(bundle, the cache folder whose trust list the export wrote): a random-init estimator for the example
    external engine, exported to ONNX with the engine's command recorded as a build in the repository root would."""
    import torch

    from toolchain.engines.registry import create_engine
    from toolchain.estimator.model import AvatarEstimator as TorchEstimator, EstimatorConfig
    with create_engine(BADGE_CMD, timeout_s=30, cwd=str(REPO)) as engine:
        schema = engine.schema.to_json()
    torch.manual_seed(0)
    model = TorchEstimator(EstimatorConfig(input_size=32, head_hidden=16, schema=schema)).eval()
    root = tmp_path_factory.mktemp("badge-bundle")
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, root / "estimator.pt")
    det = root / "face_detection_short_range.tflite"
    det.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWIFTAVATAR_CACHE", str(cache))
        report = export_model(root / "estimator.pt", root / "export", ExportOptions(
            targets=parse_targets("onnx"), no_parity=True, face_detector=det, fetch_face_detector=False,
            engine_spec=engine_record(BADGE_CMD, str(REPO), "badge")))
    return Path(report["bundle"]), cache


@pytest.fixture
def here(badge_bundle, monkeypatch):
    """This machine made the bundle: its trust list is the one the export wrote."""
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(badge_bundle[1]))
    return badge_bundle[0]


@pytest.fixture
def elsewhere(badge_bundle, monkeypatch, tmp_path):
    """Another machine: an empty trust list."""
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "other-cache"))
    return badge_bundle[0]


def _manifest(bundle: Path) -> dict:
    with open_bundle(bundle) as b:
        return copy.deepcopy(b.manifest)


def _photo(folder: Path) -> Path:
    path = folder / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path)
    return path


# ----- what the bundle records ----------------------------------------------------------------------------------
def test_export_records_the_engine_and_trusts_it_here(here):
    rec = _manifest(here)["engine_spec"]
    assert (rec["spec"], rec["kind"], rec["cwd"], rec["name"]) == (BADGE_CMD, "cmd", str(REPO), "badge")
    assert made_here(rec) and trust_file().is_file()


def test_built_in_engines_are_recorded_by_name():
    rec = engine_record("alter")
    assert (rec["kind"], rec["cwd"]) == ("built-in", None)
    assert engine_record("toolchain.engines.morph:MorphEngine")["kind"] == "module"


def test_a_malformed_engine_record_is_refused_by_the_reader(here):
    m = _manifest(here)
    m["engine_spec"]["kind"] = "shell"
    with pytest.raises(ManifestError) as info:
        check_manifest(m)
    assert info.value.field == "engine_spec.kind"
    m["engine_spec"] = {"spec": BADGE_CMD, "kind": "cmd"}          # a command without its working folder
    with pytest.raises(ManifestError, match="engine_spec.cwd"):
        check_manifest(m)
    del m["engine_spec"]                                            # optional: older bundles have none
    check_manifest(m)


# ----- starting it ------------------------------------------------------------------------------------------------
def test_made_here_runs_the_recorded_command_and_says_which(here, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                   # anywhere: the command runs in its recorded folder
    said = []
    with open_bundle_engine(_manifest(here), say=said.append, timeout_s=30) as engine:
        img = engine.render([engine.schema.default_vector()], size=32).images[0]
    assert img.shape == (32, 32, 3)
    assert len(said) == 1 and "examples/external_engine/badge_engine.py" in said[0] and str(REPO) in said[0]


def test_made_elsewhere_needs_engine_or_trust(elsewhere):
    m = _manifest(elsewhere)
    with pytest.raises(AvatarToolError) as info:
        open_bundle_engine(m, timeout_s=30)
    msg = str(info.value)
    assert "examples/external_engine/badge_engine.py" in msg and "--engine" in msg and "--trust-bundle-engine" in msg
    said = []
    with open_bundle_engine(m, trust=True, say=said.append, timeout_s=30) as engine:   # asked for: runs, printed
        assert engine.schema.engine == "badge"
    assert "--trust-bundle-engine" in said[0]


def test_a_recorded_folder_missing_here_is_a_clear_error_even_when_trusted(elsewhere):
    m = _manifest(elsewhere)
    m["engine_spec"]["cwd"] = "/nonexistent/engine-folder"
    with pytest.raises(AvatarToolError, match="does not exist here.*--engine"):
        open_bundle_engine(m, trust=True)


def test_a_forged_host_does_not_make_a_bundle_trusted(elsewhere):
    import socket
    m = _manifest(elsewhere)
    m["engine_spec"]["host"] = socket.gethostname()
    with pytest.raises(AvatarToolError, match="--trust-bundle-engine"):
        open_bundle_engine(m)


def test_engine_overrides_the_record(elsewhere, monkeypatch):
    monkeypatch.chdir(REPO)
    said = []
    with open_bundle_engine(_manifest(elsewhere), override=BADGE_CMD, say=said.append, timeout_s=30) as engine:
        assert engine.schema.engine == "badge"
    assert said and said[0].startswith("rendering with --engine")


def test_wrong_missing_or_unstartable_engines_name_the_fix(elsewhere, monkeypatch):
    m = _manifest(elsewhere)
    with pytest.raises(AvatarToolError, match="other parameters.*--engine SPEC"):
        open_bundle_engine(m, override="alter")
    with pytest.raises(AvatarToolError, match="cannot start.*--engine SPEC"):
        open_bundle_engine(m, override="cmd:/nonexistent/bin/engine", timeout_s=10)
    m["engine_spec"] = {"spec": "badge-plugin", "kind": "plug-in", "plugin": "badge_pkg:BadgeEngine", "cwd": None}
    with pytest.raises(AvatarToolError, match=r"Install the package .*badge_pkg:BadgeEngine.*--engine SPEC"):
        open_bundle_engine(m)
    del m["engine_spec"]                                             # a bundle from before engines were recorded
    with pytest.raises(AvatarToolError, match="records no engine spec.*unknown engine 'badge'.*Pass --engine"):
        open_bundle_engine(m)


# ----- predict --render ---------------------------------------------------------------------------------------------
def test_predict_render_with_the_bundle_moved_and_engine_given(elsewhere, tmp_path, monkeypatch):
    moved = tmp_path / "moved" / "badge.swiftavatar"
    moved.parent.mkdir()
    shutil.copy(elsewhere, moved)
    photo = _photo(tmp_path)
    monkeypatch.chdir(REPO)
    [entry] = predict_files(moved, [photo], detection="none", render_dir=tmp_path / "out", engine=BADGE_CMD)
    png = np.asarray(Image.open(entry["render"]))
    assert png.shape == (256, round(40 * 256 / 48) + 256, 3)
    vector = entry["result"]["avatars"][0]["vector"]
    assert set(vector) == {p.name for p in AvatarSchema.from_json(_manifest(moved)["schema"]).params}


def test_cli_refuses_an_untrusted_bundle_command_in_one_line(elsewhere, tmp_path):
    photo = _photo(tmp_path)
    r = run_cli("predict", "--bundle", str(elsewhere), str(photo), "--detection", "none", "--render",
                "--out", str(tmp_path / "out"))
    assert r.returncode != 0 and "--trust-bundle-engine" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    r = run_cli("predict", "--bundle", str(elsewhere), str(photo), "--detection", "none", "--engine", "alter")
    assert r.returncode != 0 and "only matter with --render" in r.stderr


def test_cli_runs_the_bundle_engine_made_here_and_prints_the_command(here, tmp_path):
    photo = _photo(tmp_path)
    r = run_cli("predict", "--bundle", str(here), str(photo), "--detection", "none", "--render",
                "--out", str(tmp_path / "out"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rendering with the bundle's engine: running" in r.stderr and "badge_engine.py" in r.stderr
    assert (tmp_path / "out" / "photo_avatar.png").is_file()


def test_render_vectors_with_the_bundles_engine(here, tmp_path):
    """`predict --json | render --vectors - --bundle B`: the bundle names the engine, as for predict --render."""
    import json
    schema = AvatarSchema.from_json(_manifest(here)["schema"])
    src = tmp_path / "v.jsonl"
    src.write_text(json.dumps(schema.default_vector()) + "\n")
    r = run_cli("render", "--vectors", str(src), "--bundle", str(here), "--size", "32", "--out", str(tmp_path / "out"),
                timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rendering with the bundle's engine: running" in r.stderr
    assert (tmp_path / "out" / "images" / "000000.png").is_file()
    r = run_cli("render", "-n", "2", "--out", str(tmp_path / "sampled"))
    assert r.returncode != 0 and "--engine SPEC" in r.stderr


def test_render_vectors_with_a_bundle_made_elsewhere_needs_trust(elsewhere, tmp_path):
    src = tmp_path / "v.jsonl"
    src.write_text('{"color": "red", "shape": "circle", "scale": 0.7}\n')
    r = run_cli("render", "--vectors", str(src), "--bundle", str(elsewhere), "--out", str(tmp_path / "out"))
    assert r.returncode != 0 and "--trust-bundle-engine" in r.stderr and not (tmp_path / "out").exists()


def test_a_built_in_engine_is_recorded_without_being_asked_and_starts_silently(tmp_path, monkeypatch):
    import torch

    from toolchain.engines.registry import create_engine
    from toolchain.estimator.model import AvatarEstimator as TorchEstimator, EstimatorConfig
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = TorchEstimator(EstimatorConfig(input_size=32, head_hidden=16,
                                           schema=create_engine("morph").schema.to_json())).eval()
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, tmp_path / "estimator.pt")
    det = tmp_path / "face_detection_short_range.tflite"
    det.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    with pytest.warns(UserWarning):
        report = export_model(tmp_path / "estimator.pt", tmp_path / "export", ExportOptions(
            targets=parse_targets("onnx"), no_parity=True, face_detector=det, fetch_face_detector=False))
    rec = _manifest(Path(report["bundle"]))["engine_spec"]
    assert (rec["spec"], rec["kind"], rec["cwd"]) == ("morph", "built-in", None)
    assert not trust_file().exists()                      # only external commands go on the trust list
    said = []
    [entry] = predict_files(report["bundle"], [_photo(tmp_path)], detection="none", render_dir=tmp_path / "out",
                            say=said.append)
    assert Path(entry["render"]).is_file() and said == []
