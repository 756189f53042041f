"""The seeds benchmark's rule: a lead counts when its mean passes the machines' spread or it holds in every seed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.seeds import SeedResult, config_differences, summarise, verdict


def _metrics(acc: float, dist: float, glasses: float) -> dict:
    return {"mean_accuracy": acc, "accuracy": {"glasses": glasses, "hair_style": acc},
            "render_distance": {"masked_l1": {"mean": dist}}}


def _seed(seed: int, method_acc: float, base_acc: float, method_dist: float = 0.12, base_dist: float = 0.2,
          glasses: tuple[float, float] = (0.4, 0.45)) -> SeedResult:
    return SeedResult(run=f"run{seed}", seed=seed, method=_metrics(method_acc, method_dist, glasses[0]),
                      baseline=_metrics(base_acc, base_dist, glasses[1]))


@pytest.mark.parametrize("leads, win, why", [
    ([0.01, 0.005, 0.02], True, "all 3 seeds"),           # small, but every seed
    ([0.05, 0.04], True, "larger than the spread"),       # two seeds, mean past the spread
    ([0.02, -0.01, 0.03], False, "does not lead in 1 of 3"),
    ([0.016], False, "only 1 seed"),                      # one seed inside the spread: the committed smoke case
])
def test_verdict_follows_the_rule(leads, win, why):
    got, reason = verdict(leads, spread=0.03)
    assert got is win
    assert why in reason


def test_summary_leads_are_method_minus_baseline_per_seed_and_parameter():
    s = summarise([_seed(0, 0.30, 0.29, 0.12, 0.20), _seed(1, 0.28, 0.30, 0.15, 0.15),
                   _seed(2, 0.31, 0.30, 0.10, 0.25, glasses=(0.5, 0.45))])
    assert s["accuracy_lead"]["per_seed"] == pytest.approx([0.01, -0.02, 0.01])
    assert s["accuracy_lead"]["win"] is False
    assert s["render_distance_rel"]["per_seed"] == pytest.approx([-0.4, 0.0, -0.6])
    assert s["render_distance_rel"]["win"] is False          # seed 1 ties: not lower in every seed
    g = s["per_parameter_lead"]["glasses"]
    assert g["per_seed"] == pytest.approx([-0.05, -0.05, 0.05]) and g["leads_in"] == 1


def test_render_distance_win_needs_every_one_of_three_seeds():
    s = summarise([_seed(i, 0.3, 0.3, 0.1, 0.2) for i in range(3)])
    assert s["render_distance_rel"]["win"] is True
    assert summarise([_seed(i, 0.3, 0.3, 0.1, 0.2) for i in range(2)])["render_distance_rel"]["win"] is False


def test_builds_may_differ_in_seed_threads_and_export_only():
    base = {"engine": "alter", "threads": 2, "render": {"seed": 0, "n": 800}, "real": {"generator": "a.safetensors"},
            "export": {"formats": "onnx,tflite"}}
    same = {"engine": "alter", "threads": 1, "render": {"seed": 1, "n": 800}, "real": {"generator": "a.safetensors"},
            "export": {"formats": "onnx"}}
    other = {"engine": "alter", "threads": 2, "render": {"seed": 2, "n": 800}, "real": {"generator": None}}
    assert config_differences([base, same]) == []
    assert config_differences([base, same, other]) == ["real.generator"]


def test_a_change_is_judged_against_the_same_seeds_without_it():
    from benchmarks.seeds import compare
    unchanged = [_seed(0, 0.30, 0.29, 0.12), _seed(1, 0.28, 0.30, 0.15), _seed(2, 0.31, 0.30, 0.10)]
    changed = [_seed(2, 0.33, 0.30, 0.09, glasses=(0.5, 0.45)), _seed(0, 0.31, 0.29, 0.12), _seed(1, 0.29, 0.30, 0.18)]
    s = compare(changed, unchanged, spread=0.03)
    assert s["seeds"] == [0, 1, 2]                           # paired by seed, not by position
    assert s["accuracy_change"]["per_seed"] == pytest.approx([0.01, 0.01, 0.02])
    assert s["accuracy_change"]["win"] is True and "the change leads in all 3" in s["accuracy_change"]["why"]
    assert s["render_distance_change_rel"]["per_seed"] == pytest.approx([0.0, 0.2, -0.1])
    assert s["render_distance_change_rel"]["lower_in"] == 1
    assert s["per_parameter_change"]["glasses"]["per_seed"] == pytest.approx([0.0, 0.0, 0.1])
    assert s["baseline_same"] is True
    worse = compare([_seed(0, 0.29, 0.29), _seed(1, 0.29, 0.30), _seed(2, 0.30, 0.30)], unchanged)
    assert worse["accuracy_change"]["win"] is False
    assert "the change does not lead in 2 of 3" in worse["accuracy_change"]["why"]


def test_a_change_needs_the_same_seeds_on_both_sides():
    from benchmarks.seeds import compare
    with pytest.raises(ValueError, match="the same seeds once each"):
        compare([_seed(0, 0.3, 0.3), _seed(1, 0.3, 0.3)], [_seed(0, 0.3, 0.3), _seed(2, 0.3, 0.3)])


def test_a_code_change_with_the_same_settings_is_named_by_the_code_it_touched(tmp_path):
    from benchmarks.seeds import code_differences

    def build(name: str, estimator: str) -> Path:
        run = tmp_path / name
        for stage, code in (("pairs", {"toolchain/production": "p1"}),
                            ("train", {"toolchain/estimator": estimator, "toolchain/data": "d1"}),
                            ("baseline", {"toolchain/estimator": estimator})):
            (run / stage).mkdir(parents=True)
            (run / stage / "stage.json").write_text(json.dumps({"basis": {"stage": stage, "code": code}}))
        return run
    old, new, same = build("old", "e1"), build("new", "e2"), build("same", "e1")
    assert code_differences([new], [old]) == ["code of toolchain/estimator (baseline, train): e1 → e2"]
    assert code_differences([same], [old]) == []
