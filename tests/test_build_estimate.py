"""The build's opening estimate times the generator the build will really run: a given G_real file's own size,
not the configured preset's (a 64 px file under the 32 px default made the pairs estimate ~6x short)."""
from __future__ import annotations

from dataclasses import replace

import torch

from toolchain.generators.config import generator_preset
from toolchain.generators.generator import SemanticGenerator
from toolchain.generators.io import save_weights
from toolchain.pipeline.calibrate import build_generator_config
from toolchain.pipeline.config import resolve_config


def test_a_given_generator_file_sets_the_estimated_generator(tmp_path):
    big = replace(generator_preset("tiny"), size=64)
    torch.manual_seed(0)
    save_weights(tmp_path / "g.safetensors", SemanticGenerator(big), big)
    given = resolve_config("alter", "smoke", overrides=[f"real.generator={tmp_path / 'g.safetensors'}"])
    assert build_generator_config(given).size == 64
    default = resolve_config("alter", "smoke")
    assert build_generator_config(default) == generator_preset(default.real.generator_config)
    assert build_generator_config(default).size == 32


def test_the_estimate_of_a_build_with_until_names_only_the_stages_it_runs(tmp_path, monkeypatch):
    from tests.test_build import tiny_config
    from toolchain.pipeline import calibrate
    from toolchain.pipeline.build import STAGE_NAMES
    timed = []

    def fake_calibrate(cfg, cached=None, done=()):   # what is timed, not how long it takes
        timed.extend(n for n in STAGE_NAMES if n not in done)
        return {n: 0.0 if n in done else 60.0 for n in STAGE_NAMES}
    monkeypatch.setattr(calibrate, "calibrate_build", fake_calibrate)
    monkeypatch.setattr(calibrate, "cached_g_real", lambda cfg, force=(): None)
    est, line = calibrate.opening_estimate(tiny_config(), tmp_path / "run", until="pairs")
    upto = list(STAGE_NAMES[:STAGE_NAMES.index("pairs") + 1])
    assert list(est) == upto and timed == upto
    assert "pairs ~60 s" in line and "train" not in line and "total ~4 min" in line


def test_an_unreadable_run_folder_is_said_in_the_estimate_not_swallowed(tmp_path, monkeypatch):
    from tests.test_build import tiny_config
    from toolchain.pipeline import calibrate, runner
    from toolchain.pipeline.build import STAGE_NAMES

    def broken(*args, **kwargs):
        raise ValueError("stage.json of 'pairs' is not JSON")
    monkeypatch.setattr(runner, "finished_stages", broken)
    monkeypatch.setattr(calibrate, "calibrate_build", lambda cfg, cached=None, done=(): {n: 60.0 for n in STAGE_NAMES})
    monkeypatch.setattr(calibrate, "cached_g_real", lambda cfg, force=(): None)
    est, line = calibrate.opening_estimate(tiny_config(), tmp_path / "run")
    assert list(est) == list(STAGE_NAMES) and " done" not in line
    assert "could not be read" in line and "ValueError: stage.json of 'pairs' is not JSON" in line
