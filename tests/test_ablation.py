"""The ablation's bookkeeping: matched budgets and the verdict against the paper's goal."""
from types import SimpleNamespace

import pytest

from benchmarks.ablation import summarise
from toolchain.estimator.train import TrainConfig, matched_budget


def _row(acc: float, dist: float, mae: float = 0.1) -> dict:
    return {"metrics": {"mean_accuracy": acc, "accuracy": {"hair": acc}, "mae": {"tone": mae},
                        "render_distance": {"masked_l1": {"mean": dist}, "lpips": {"available": False}}}}


SCHEMA = SimpleNamespace(continuous=[SimpleNamespace(name="tone", low=0.0, high=2.0)])


def test_matched_budget_stretches_epochs_and_lr_schedule():
    base = TrainConfig(epochs=3, lr_step_epochs=3)
    tc = matched_budget(base, n_samples=320, samples_seen=960 * 3)
    assert (tc.epochs, tc.lr_step_epochs) == (9, 9)
    assert matched_budget(base, 960, 960 * 3) == base
    assert matched_budget(base, 10_000, 960 * 3).epochs == 1


def test_with_renders_adds_the_renders_to_the_rows_of_pairs_only():
    from benchmarks.ablation import ROWS, row_training_sets
    sets = {name: (f"/{name}", 10 * (i + 1)) for i, name in enumerate(ROWS)}
    assert all(row_training_sets(n, sets, False) == ([f"/{n}"], sets[n][1]) for n in ROWS)
    got = {n: row_training_sets(n, sets, True) for n in ROWS}
    assert got["sa"] == (["/sa", "/baseline"], 30 + 10) and got["da"] == (["/da", "/baseline"], 20 + 10)
    assert got["no_colour"] == (["/no_colour", "/baseline"], 40 + 10)
    assert got["baseline"] == (["/baseline"], 10) and got["oracle"] == (["/oracle"], 50)


def test_summary_goal_met_and_missed():
    rows = {"baseline": _row(0.40, 0.20), "da": _row(0.50, 0.15), "sa": _row(0.60, 0.10),
            "no_colour": _row(0.55, 0.12), "oracle": _row(0.70, 0.05)}
    s = summarise({"rows": rows}, SCHEMA)
    assert s["render_change_vs_baseline"]["sa"] == pytest.approx(-0.5)
    assert s["accuracy_gap_closed"] == pytest.approx(2 / 3)
    assert s["paper_order_kept"] and s["goal_met"]
    assert s["normalised_mae"]["sa"] == pytest.approx(0.05)
    # +DA worse than the Baseline: the paper's order is broken, so the goal is not met
    rows["da"] = _row(0.50, 0.25)
    s = summarise({"rows": rows}, SCHEMA)
    assert not s["paper_order_kept"] and not s["goal_met"]
    # LPIPS, when it was computed, is the render distance used
    rows = {k: {"metrics": {**r["metrics"], "render_distance": {"masked_l1": {"mean": 1.0}, "lpips": {"mean": v}}}}
            for k, r, v in zip(rows, rows.values(), (0.5, 0.4, 0.2, 0.3, 0.1))}
    s = summarise({"rows": rows}, SCHEMA)
    assert s["render_metric"] == "LPIPS" and s["render_change_vs_baseline"]["sa"] == pytest.approx(-0.6)


def test_load_note_is_per_core():
    """1.2 runnable processes on 2 cores is not a busy machine; 2.6 on 2 cores is."""
    from benchmarks._report import load_note
    assert load_note(1.2, cores=2) == "load average 1.20 (0.60 per core) at start"
    assert "busy" in load_note(2.6, cores=2) and "1.30 per core" in load_note(2.6, cores=2)
    assert "busy" not in load_note(2.0, cores=2)


def test_cpu_note_says_whether_int8_has_a_fast_path():
    """The machine line must tell a VNNI machine (int8 ~3-4x fp32) from one without (int8 = fp32 speed)."""
    from benchmarks._report import SIMD_FLAGS, cpu_features, cpu_note
    assert cpu_note({"model": "AMD EPYC", "simd": ["avx2", "fma"]}) == \
        "CPU AMD EPYC: avx2, fma; no int8 dot product (VNNI)"
    assert cpu_note({"model": "Xeon", "simd": ["avx2", "avx512f", "avx512_vnni"]}).endswith(
        "; int8 dot product (avx512_vnni)")
    assert cpu_note({"model": "Graviton", "simd": ["asimddp"]}).endswith("; int8 dot product (asimddp)")
    assert cpu_note({}) == "CPU features unknown"
    here = cpu_features()
    assert not here or set(here["simd"]) <= set(SIMD_FLAGS)


def test_tables_without_the_no_colour_row_say_it_was_not_run(tmp_path):
    from benchmarks.ablation import write_tables
    from toolchain.pipeline.config import resolve_config
    rows = {k: {"metrics": {**_row(a, d)["metrics"], "mae": {}}, "n_train_samples": 100, "epochs": 2, "samples_seen": 200}
            for k, a, d in (("baseline", 0.40, 0.20), ("da", 0.50, 0.15), ("sa", 0.60, 0.10), ("oracle", 0.70, 0.05))}
    result = {"cfg": resolve_config("alter", "smoke"), "rows": rows, "budget": 200, "run": "RUN", "seconds": 1.0,
              "heldout": {"kind": "proxy", "n": 300, "note": "test"}, "skipped": {"no_colour": "--skip-no-colour"}}
    j, md, png = write_tables(result, tmp_path, "python -m benchmarks ablation --skip-no-colour")
    text = md.read_text()
    assert "| full method, no colour loss | not run (--skip-no-colour) |" in text
    assert "| + SA (full method) | 100 | 2 | 200 | 0.600 | +0.200 |" in text
    assert "Goal met: yes" in text and png.is_file()


def test_as_is_refuses_a_build_that_has_not_finished(tmp_path):
    from benchmarks.ablation import run_ablation
    from toolchain.errors import AvatarToolError
    from toolchain.pipeline.config import config_json, resolve_config
    (tmp_path / "config.json").write_text(config_json(resolve_config("alter", "smoke")))
    with pytest.raises(AvatarToolError, match=r"--as-is needs a finished build; .* has not finished render, "
                                              r"real_generator, .*baseline: run the build"):
        run_ablation("alter", "smoke", tmp_path, [], print, as_is=True)
    with pytest.raises(AvatarToolError, match="--as-is needs a finished build in .*none; there is none"):
        run_ablation("alter", "smoke", tmp_path / "none", [], print, as_is=True)
    assert not (tmp_path / "ablation").exists() and not (tmp_path / "none").exists()


def test_other_training_settings_on_a_finished_build_retrain_every_row():
    """`--as-is --set train.sharpen=2`: the build's estimators were trained without it, so none may stand in."""
    from benchmarks.ablation import _with_train_settings, rows_taken_from_build
    from toolchain.pipeline.config import resolve_config
    built = resolve_config("alter", "cpu", overrides=["train.sharpen=0"])
    cfg, changed = _with_train_settings(built, ["train.sharpen=2"])
    assert changed and cfg.train.sharpen == 2.0 and cfg.real == built.real and cfg.pairs == built.pairs
    assert _with_train_settings(built, ["train.sharpen=0"])[1] is False
    assert _with_train_settings(built, ["train.seed=1"])[1] is True
    records = {"sa": {"model": "sa.pt"}, "baseline": {"model": "b.pt"}, "oracle": {"model": "o.pt"}}
    assert rows_taken_from_build(cfg, records, True, retrain=True) == {}
    assert set(rows_taken_from_build(built, records, True, retrain=False)) == {"sa", "baseline", "oracle"}
    assert set(rows_taken_from_build(built, records, False, retrain=False)) == {"sa", "baseline"}


def test_as_is_refuses_settings_for_stages_it_does_not_run(tmp_path):
    from benchmarks.ablation import run_ablation
    from toolchain.errors import AvatarToolError
    from toolchain.pipeline.config import config_json, resolve_config
    (tmp_path / "config.json").write_text(config_json(resolve_config("alter", "smoke")))
    with pytest.raises(AvatarToolError, match=r"only train\.\* settings can change; pairs\.k would need a new build"):
        run_ablation("alter", "smoke", tmp_path, ["pairs.k=5", "train.sharpen=2"], print, as_is=True)
    with pytest.raises(AvatarToolError, match="is a build of engine alter, preset smoke, not morph smoke: give --engine alter"):
        run_ablation("morph", "smoke", tmp_path, ["train.sharpen=2"], print, as_is=True)
    with pytest.raises(AvatarToolError, match="add --as-is to train every row again"):
        run_ablation("alter", "smoke", tmp_path, ["train.sharpen=2"], print)
    assert not (tmp_path / "ablation").exists()


def test_tables_say_every_row_was_trained_again(tmp_path):
    from benchmarks.ablation import write_tables
    from toolchain.pipeline.config import resolve_config
    rows = {k: {"metrics": {**_row(a, d)["metrics"], "mae": {}}, "n_train_samples": 100, "epochs": 2, "samples_seen": 200}
            for k, a, d in (("baseline", 0.40, 0.20), ("da", 0.50, 0.15), ("sa", 0.60, 0.10), ("oracle", 0.70, 0.05))}
    result = {"cfg": resolve_config("alter", "smoke"), "rows": rows, "budget": 200, "run": "RUN", "seconds": 1.0,
              "heldout": {"kind": "proxy", "n": 300, "note": "test"}, "as_is": True,
              "train_settings": ["train.sharpen=2"]}
    j, md, _ = write_tables(result, tmp_path, "python -m benchmarks ablation --as-is --set train.sharpen=2")
    assert "was trained again here with `train.sharpen=2`; the build's own estimators were not used" in md.read_text()
    import json
    assert json.loads(j.read_text())["train_settings"] == ["train.sharpen=2"]
