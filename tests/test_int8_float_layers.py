"""Choosing which int8 layers stay float (converters.int8_quant.choose_float_layers): the logic on a fake
quantizer whose per-layer gains are known, so the ranking and the smallest-k rule can be checked exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters.int8_quant import Score, _sizes, choose_float_layers, softmax_kl

BASE = 0.970
GAIN = {"a": 0.001, "b": 0.006, "c": 0.004, "d": 0.0, "e": 0.002}


def fake_quantize(layers):
    return json.dumps(sorted(layers)).encode()


def fake_score(calls):
    def score(model: bytes) -> Score:
        layers = json.loads(model)
        calls.append(layers)
        gain = sum(GAIN[x] for x in layers)
        return Score(BASE + gain, 0.01 - gain)
    return score


def test_plain_int8_that_reaches_the_target_keeps_nothing_float():
    calls = []
    rec = choose_float_layers(fake_quantize, fake_score(calls), target=0.96, candidates=list(GAIN))
    assert rec["float_layers"] == [] and rec["reached"] and rec["ranking"] == []
    assert calls == [[]]   # no sensitivity scan when it is not needed
    assert json.loads(rec["model"]) == []


def test_smallest_measured_set_that_reaches_the_target():
    calls = []
    rec = choose_float_layers(fake_quantize, fake_score(calls), target=0.980, candidates=list(GAIN))
    # ranked by the damage each layer's rounding does, measured one at a time: b, c, e, a, d
    assert [r["layer"] for r in rec["ranking"]] == ["b", "c", "e", "a", "d"]
    assert rec["float_layers"] == ["b", "c"] and rec["reached"]          # k=1 gives 0.976, k=2 gives 0.980
    assert [s["k"] for s in rec["steps"]] == [1, 2]
    assert json.loads(rec["model"]) == ["b", "c"]
    assert "2 layer(s)" in rec["why"]


def test_unreachable_target_returns_the_best_set_and_says_so():
    rec = choose_float_layers(fake_quantize, fake_score([]), target=0.999, max_layers=3, candidates=list(GAIN))
    assert not rec["reached"]
    assert [s["k"] for s in rec["steps"]] == [1, 2, 3]
    assert rec["float_layers"] == ["b", "c", "e"]
    assert "not reached" in rec["why"]


def test_no_gain_keeps_plain_int8():
    rec = choose_float_layers(fake_quantize, fake_score([]), target=0.99, candidates=["d"])
    assert rec["float_layers"] == [] and not rec["reached"] and json.loads(rec["model"]) == []


def test_sizes_double_up_to_the_limit():
    assert _sizes(16) == [1, 2, 4, 8, 16]
    assert _sizes(5) == [1, 2, 4, 5]
    assert _sizes(1) == [1] and _sizes(0) == []


def test_softmax_kl_is_zero_for_equal_logits_and_grows_with_damage():
    rng = np.random.default_rng(0)
    ref = {"h": rng.standard_normal((8, 5)).astype(np.float32)}
    assert softmax_kl(ref, {"h": ref["h"] + 3.0}, ["h"]) == pytest.approx(0.0, abs=1e-6)  # shift-invariant
    small = softmax_kl(ref, {"h": ref["h"] + 0.05 * rng.standard_normal((8, 5))}, ["h"])
    large = softmax_kl(ref, {"h": ref["h"] + 0.5 * rng.standard_normal((8, 5))}, ["h"])
    assert 0 < small < large


def test_unreachable_target_prefers_less_damage_when_agreement_ties():
    gains = {"x": 0.0, "y": 0.0}

    def score(model: bytes) -> Score:
        layers = json.loads(model)
        return Score(0.97, 0.01 - 0.001 * len(layers))   # agreement never moves; the logits get closer

    rec = choose_float_layers(fake_quantize, score, target=0.99, candidates=list(gains))
    assert not rec["reached"] and len(rec["float_layers"]) == 2


def test_output_layers_are_tried_first_as_one_set_and_skip_the_scan_when_they_suffice():
    calls = []
    rec = choose_float_layers(fake_quantize, fake_score(calls), target=0.980, candidates=list(GAIN), first_try=["b", "c"])
    assert rec["float_layers"] == ["b", "c"] and rec["reached"] and rec["ranking"] == []
    assert calls == [[], ["b", "c"]]                     # plain, then the output layers: no per-layer scan
    assert "output (logit) layer" in rec["why"]
    calls.clear()
    rec = choose_float_layers(fake_quantize, fake_score(calls), target=0.980, candidates=list(GAIN), first_try=["d"])
    assert rec["float_layers"] == ["b", "c"] and len(calls) > 2   # not enough: the measured scan decides
    assert rec["steps"][0]["first_try"] == ["d"]


def test_output_layers_that_miss_the_target_still_win_when_no_scanned_set_does_better():
    # the alter 224 px case: the logits in float beat every scanned set of convolutions, which cost far more time
    gains = {"logits": 0.015, "conv1": 0.002, "conv2": 0.003}
    rec = choose_float_layers(fake_quantize, lambda m: Score(BASE + sum(gains[x] for x in json.loads(m)), 0.01),
                              target=0.99, candidates=["conv1", "conv2"], first_try=["logits"])
    assert not rec["reached"] and rec["float_layers"] == ["logits"] and json.loads(rec["model"]) == ["logits"]
    assert "output (logit) layer" in rec["why"] and "0.9850" in rec["why"]
    assert [s.get("k") for s in rec["steps"][1:]] == [1, 2]   # the scan still ran and lost


def test_an_empty_ranking_tries_the_output_layers_only():
    """``int8_float_layers="outputs"`` (the smoke preset) passes an empty ranking: plain int8, then the logit set, and
    no scan whether or not the set reaches the target; a set that loses to plain int8 is not kept."""
    calls = []
    rec = choose_float_layers(fake_quantize, fake_score(calls), target=0.990, max_layers=2, ranking=[],
                              first_try=["b", "c"])
    assert calls == [[], ["b", "c"]] and not rec["reached"]
    assert rec["float_layers"] == ["b", "c"] and json.loads(rec["model"]) == ["b", "c"]
    calls.clear()
    rec = choose_float_layers(fake_quantize, fake_score(calls), target=0.990, max_layers=1, ranking=[],
                              first_try=["d"])
    assert calls == [[], ["d"]] and rec["float_layers"] == [] and json.loads(rec["model"]) == []


def test_the_float_layer_setting_parses_modes_and_lists():
    from converters.export import parse_int8_float_layers
    from toolchain.errors import AvatarToolError
    assert [parse_int8_float_layers(v) for v in ("auto", " outputs", "none")] == ["auto", "outputs", "none"]
    assert parse_int8_float_layers("conv_a, logits_b,") == ["conv_a", "logits_b"]
    with pytest.raises(AvatarToolError, match="give one of auto, outputs, none"):
        parse_int8_float_layers(" , ")
    with pytest.raises(AvatarToolError, match="did you mean 'outputs'"):   # the CLI's `--int8-float-layers output` too
        parse_int8_float_layers("output")
