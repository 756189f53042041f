"""G_real's snapshot pick: the kept snapshot whose samples show the most faces becomes the build's G_real,
scored on samples of its own seed; the cache keeps the snapshots; no face models means the last weights, said."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from toolchain.evaluation import snapshot_pick
from toolchain.evaluation.face_likeness import at_size, folder_images, noise_images
from toolchain.evaluation.pair_measures import generator_samples
from toolchain.evaluation.snapshot_pick import PICK_SEED, pick_by_faces
from toolchain.pipeline.build import build
from toolchain.pipeline.config import resolve_config
from toolchain.pipeline.report import Doc, g_real_origin, pick_table
from toolchain.pipeline.runner import read_record
from toolchain.proxy.eval_set import write_proxy_set

from .test_build import Recorder, tiny_config


@pytest.fixture(scope="module")
def faces_and_noise(tmp_path_factory, detector_model):   # noqa: F811
    d = tmp_path_factory.mktemp("photos")
    write_proxy_set("alter", d, n=12, seed=3, size=128, role="unlabelled")
    return list(at_size(folder_images(d), 64)), noise_images(12, 64)


def _samples_by_name(monkeypatch, shown: dict[str, list]) -> list[int]:
    seeds: list[int] = []

    def fake(path, n, seed):   # noqa: ANN001
        seeds.append(seed)
        return shown[Path(path).stem][:n]
    monkeypatch.setattr(snapshot_pick, "generator_samples", fake)
    return seeds


def test_the_snapshot_with_faces_wins_even_before_the_last(monkeypatch, faces_and_noise):
    faces, noise = faces_and_noise
    seeds = _samples_by_name(monkeypatch, {"early": noise, "mid": faces, "last": noise})
    pick = pick_by_faces([(100, Path("early")), (200, Path("mid")), (300, Path("last"))], n=12)
    assert pick["step"] == 200 and pick["weights"] == "mid"
    found = {s["step"]: s["found"] for s in pick["scores"]}
    assert found[200] >= 6 and found[100] <= 1 and found[300] <= 1        # photos: 0.75 measured, noise: the floor
    assert pick["last"]["step"] == 300 and set(seeds) == {PICK_SEED}
    assert pick["best"] == pick["scores"][1]


def test_a_tie_goes_to_the_later_snapshot(monkeypatch, faces_and_noise):
    _, noise = faces_and_noise
    _samples_by_name(monkeypatch, {"a": noise, "b": noise})
    assert pick_by_faces([(1, Path("a")), (2, Path("b"))], n=8)["step"] == 2
    with pytest.raises(ValueError, match="no snapshots"):
        pick_by_faces([], n=8)


def test_the_pick_never_scores_on_the_pair_measures_samples():
    assert PICK_SEED != inspect.signature(generator_samples).parameters["seed"].default


def _real_stage(engine: str, run: Path, **more) -> tuple[dict, Recorder]:
    ui = Recorder()
    build(tiny_config(engine, **{"real.keep_every": 2, "real.pick": "faces", "real.pick_n": 8, **more}), run, ui=ui,
          stop_before="avatar_generator")
    return read_record(run / "real_generator")["outputs"], ui


def test_the_build_picks_among_kept_snapshots_and_the_cache_keeps_them(tmp_path, monkeypatch, detector_model):  # noqa: F811
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", str(tmp_path / "cache"))
    first, _ = _real_stage("alter", tmp_path / "a")
    pick = first["pick"]
    assert pick["how"] == "faces" and [s["step"] for s in pick["scores"]] == [2, 4] and pick["n"] == 8
    assert first["generator"] == str(Path(pick["weights"]).resolve())
    assert Path(first["generator"]).parent.name == "kept" and Path(first["samples"]).name == "samples"
    assert (Path(first["cache"]["path"]) / "kept" / "step_000002.safetensors").is_file()

    second, _ = _real_stage("morph", tmp_path / "b")            # from the cache, snapshots and all
    assert second["cache"]["reused"] is True
    assert [s["found"] for s in second["pick"]["scores"]] == [s["found"] for s in pick["scores"]]
    assert second["pick"]["step"] == pick["step"]

    last, _ = _real_stage("alter", tmp_path / "c", **{"real.pick": "last"})
    assert last["pick"]["how"] == "last" and last["generator"].endswith("gan/generator.safetensors")
    # the default, asked for, adds nothing to the report's G_real line
    assert g_real_origin({"source": "proxy", "size": 32, "iters": 7, "pick": last["pick"]}) == "proxy (32 px, 7 steps)"
    assert resolve_config("alter", "cpu").real.pick == "last"     # opt-in: measured mixed (README)


def test_without_face_models_the_last_weights_are_used_and_said(tmp_path, monkeypatch):
    from sdk_python.errors import DetectorModelUnavailableError
    from toolchain.pipeline.stages import real_generator

    def missing(fetch: bool = True):
        raise DetectorModelUnavailableError("no face detector model here; run `avatartool models fetch`")
    monkeypatch.setattr(real_generator, "face_model_paths", missing)
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", "off")
    out, ui = _real_stage("alter", tmp_path / "a")
    assert out["pick"]["how"] == "last" and "face models missing" in out["pick"]["why"]
    assert out["generator"].endswith("gan/generator.safetensors")
    assert any("last weights are used" in w for w in ui.warnings)
    assert "its last weights: face models missing" in g_real_origin({"source": "proxy", "size": 32, **out})


def test_a_bad_pick_setting_is_refused_with_the_choices(tmp_path, monkeypatch):
    from toolchain.errors import AvatarToolError
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", "off")
    with pytest.raises(AvatarToolError, match="real.pick='best' is not a choice: use one of faces, last"):
        _real_stage("alter", tmp_path / "a", **{"real.pick": "best"})
    assert not (tmp_path / "a").exists()          # refused with the settings, before any stage (no G_real trained)


def test_the_report_says_which_snapshot_and_shows_every_score(tmp_path):
    pick = {"how": "faces", "step": 200, "weights": "w", "n": 16, "seed": PICK_SEED,
            "scores": [{"step": 100, "found": 1, "n": 16, "rate": 1 / 16}, {"step": 200, "found": 6, "n": 16, "rate": 6 / 16},
                       {"step": 300, "found": 2, "n": 16, "rate": 2 / 16}]}
    pick["best"], pick["last"] = pick["scores"][1], pick["scores"][-1]
    text = g_real_origin({"source": "unlabelled photo proxy", "size": 64, "iters": 300, "pick": pick})
    assert "the snapshot at step 200, picked from 3 kept snapshots" in text and ": 6 (the last weights: 2)" in text
    # a record from before the pick kept its chosen score reads the same
    old = {k: v for k, v in pick.items() if k != "best"}
    assert g_real_origin({"source": "unlabelled photo proxy", "size": 64, "iters": 300, "pick": old}) == text
    doc = Doc(tmp_path)
    pick_table(doc, pick)
    md = "\n".join(doc.md)
    assert "| 200 | 6 (38 %) | yes |" in md and "| 300 | 2 (12 %) |  |" in md
