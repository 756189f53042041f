"""The parity gate judges every parameter on its own: one damaged head of many fails the model even when the
agreement pooled over all heads passes, and the int8 float-layer search aims at the worst head, not the mean."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters import parity as P
from converters.int8_quant import Score, choose_float_layers, score_outputs
from sdk_python.contract import AGREEMENT_THRESHOLDS, output_name

N_IMAGES, N_HEADS, N_OPTIONS = 400, 20, 5


def _outputs(n_heads: int = N_HEADS, continuous: tuple[str, ...] = ()) -> dict[str, dict]:
    out = {output_name(f"p{i:02d}"): {"kind": "discrete", "parameter": f"p{i:02d}",
                                      "options": [str(k) for k in range(N_OPTIONS)]} for i in range(n_heads)}
    if continuous:
        out["continuous"] = {"kind": "continuous", "parameters": list(continuous), "range": [0.0, 1.0]}
    return out


def _reference(outputs: dict[str, dict], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = {}
    for name, info in outputs.items():
        width = N_OPTIONS if info["kind"] == "discrete" else len(info["parameters"])
        ref[name] = (rng.standard_normal((N_IMAGES, width)) if info["kind"] == "discrete"
                     else rng.uniform(0.1, 0.9, (N_IMAGES, width))).astype(np.float32)
    return ref


def _flip(logits: np.ndarray, n: int) -> np.ndarray:
    """A copy whose argmax differs from ``logits``'s on the first ``n`` images."""
    out = logits.copy()
    top = logits.argmax(1)
    for i in range(n):
        out[i, (top[i] + 1) % out.shape[1]] = logits[i].max() + 1.0
    return out


def test_one_damaged_head_fails_the_gate_though_the_pooled_agreement_passes():
    outputs = _outputs()
    ref = _reference(outputs)
    got = {k: v.copy() for k, v in ref.items()}
    damaged = output_name("p07")
    got[damaged] = _flip(ref[damaged], 26)                         # 374 / 400 = 0.935 on that head alone
    row = P.compare(P.ParityRow("tflite", "int8", "estimator_int8.tflite"), ref, got, outputs)
    assert row.agreement == pytest.approx(1 - 26 / (N_IMAGES * N_HEADS))
    assert row.agreement >= AGREEMENT_THRESHOLDS["int8"]           # the old pooled gate would have passed it
    assert (row.worst_head, row.worst_head_agreement) == ("p07", pytest.approx(0.935))
    assert row.status == P.BELOW
    assert "1 of 20 discrete heads below 0.98" in row.reason and "p07 0.9350" in row.reason
    md = P.markdown([row])
    assert "p07 0.9350" in md and "below threshold" in md


def test_every_head_at_its_threshold_passes_and_one_flip_more_fails():
    outputs = _outputs(3)
    ref = _reference(outputs)
    allowed = int(N_IMAGES * (1 - AGREEMENT_THRESHOLDS["int8"]))   # 8 of 400 flips = 0.98 exactly
    got = {k: _flip(v, allowed) for k, v in ref.items()}
    row = P.compare(P.ParityRow("tflite", "int8", "f"), ref, got, outputs)
    assert row.status == P.VALIDATED and row.worst_head_agreement == pytest.approx(0.98)
    got[output_name("p01")] = _flip(ref[output_name("p01")], allowed + 1)
    row = P.compare(P.ParityRow("tflite", "int8", "f"), ref, got, outputs)
    assert row.status == P.BELOW and row.reason.startswith("1 of 3 discrete heads") and "p01" in row.reason


def test_one_continuous_parameter_off_fails_though_the_mean_over_parameters_passes():
    names = tuple(f"c{i}" for i in range(10))
    outputs = _outputs(1, continuous=names)
    ref = _reference(outputs)
    got = {k: v.copy() for k, v in ref.items()}
    got["continuous"][:, 3] += 0.05                   # one parameter 5 % of its range off everywhere, under max 0.15
    row = P.compare(P.ParityRow("tflite", "int8", "f"), ref, got, outputs)
    assert row.cont_mean_abs == pytest.approx(0.005, rel=1e-3)   # mean over parameters: 0.005 < 0.02 would pass
    assert row.worst_cont == "c3" and row.cont_per_param["c3"] == pytest.approx(0.05, rel=1e-3)
    assert row.status == P.BELOW and "c3 5.00e-02" in row.reason and "p00" not in row.reason


def test_score_is_the_worst_head_not_the_mean():
    outputs = _outputs()
    ref = _reference(outputs)
    got = {k: v.copy() for k, v in ref.items()}
    got[output_name("p11")] = _flip(ref[output_name("p11")], 40)
    s = score_outputs(ref, got, outputs)
    assert (s.worst_head, s.agreement) == ("p11", pytest.approx(0.9))
    assert s.pooled == pytest.approx(1 - 40 / (N_IMAGES * N_HEADS))
    assert s.kl > 0


# ----- the float-layer search targets the worst head --------------------------------------------------------
# A fake int8 model with 20 heads: layer "broad" fixes a little of every head (the pooled figure rises most), layer
# "p07_logits" fixes the one damaged head. Scored through score_outputs as the exporter scores real candidates.
_OUT = _outputs()
_REF = _reference(_OUT, seed=1)


def _fake_quantize(layers):
    return json.dumps(sorted(layers)).encode()


def _fake_score(model: bytes) -> Score:
    layers = set(json.loads(model))
    got = {}
    for name in _OUT:
        flips = 2                                                   # every other head: 0.995 plain
        if name == output_name("p07"):
            flips = 2 if "p07_logits" in layers else 26            # the damaged head: 0.935, fixed to 0.995
        elif "broad" in layers:
            flips = 0
        got[name] = _flip(_REF[name], flips)
    return score_outputs(_REF, got, _OUT)


def test_search_keeps_the_layer_that_fixes_the_worst_head():
    target = AGREEMENT_THRESHOLDS["int8"] + 0.01
    plain = _fake_score(_fake_quantize([]))
    assert plain.pooled > target > plain.agreement                  # a mean-driven search would stop here
    rec = choose_float_layers(_fake_quantize, _fake_score, target, candidates=["broad", "p07_logits", "other"])
    assert rec["reached"] and rec["float_layers"] == ["p07_logits"]
    assert rec["base"]["worst_head"] == "p07" and rec["objective"].startswith("worst")
    assert rec["ranking"][0]["layer"] == "p07_logits"
    assert "worst head p07" in rec["why"]
