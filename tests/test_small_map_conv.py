"""The estimator's weight-gradient path for tiny maps: same gradients as autograd's, taken only where routed."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolchain.engines.alter import ALTER_SCHEMA
from toolchain.estimator import small_map_conv
from toolchain.estimator.model import AvatarEstimator, EstimatorConfig
from toolchain.estimator.small_map_conv import _UnfoldWeightGradConv2d, small_map_weight_grads


@pytest.mark.parametrize("c_in,c_out,k,stride,pad,size", [(16, 24, 3, 1, 1, 2), (8, 16, 3, 2, 1, 4), (8, 16, 1, 2, 0, 4),
                                                          (4, 6, 3, 1, 1, 5)])
def test_gradients_equal_autograds_convolution(c_in, c_out, k, stride, pad, size):
    torch.manual_seed(0)
    x = torch.randn(3, c_in, size, size, requires_grad=True)
    w = torch.randn(c_out, c_in, k, k, requires_grad=True)
    y_ref = F.conv2d(x, w, None, stride, pad)
    y = _UnfoldWeightGradConv2d.apply(x, w, (stride, stride), (pad, pad))
    assert torch.equal(y, y_ref)          # the forward is oneDNN's own call
    g = torch.randn_like(y)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, w), g)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    assert torch.equal(gx, gx_ref)        # so is the input gradient
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-5)
    assert not torch.equal(gw, torch.zeros_like(gw))


def _count_routed(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    real = _UnfoldWeightGradConv2d.apply

    def counting(x, weight, stride, padding):
        calls.append((tuple(x.shape), tuple(weight.shape)))
        return real(x, weight, stride, padding)
    monkeypatch.setattr(small_map_conv._UnfoldWeightGradConv2d, "apply", staticmethod(counting))
    return calls


def test_only_the_2x2_maps_of_a_64px_estimator_are_routed_and_only_while_training(monkeypatch):
    calls = _count_routed(monkeypatch)
    model = AvatarEstimator(EstimatorConfig(input_size=64, schema=ALTER_SCHEMA.to_json()))
    with small_map_weight_grads(model) as eligible:
        assert eligible == 20                 # every ResNet-18 convolution: no bias, groups 1
        out = model(torch.randn(2, 3, 64, 64))
        # layer4: two 3x3 convolutions per block, two blocks, and the 1x1 shortcut: outputs 2x2
        assert len(calls) == 5 and all(w[0] == 512 for _, w in calls)
        sum(v.sum() for v in out.values()).backward()
        assert model.backbone.layer4[1].conv2.weight.grad.abs().sum() > 0
        calls.clear()
        with torch.no_grad():
            model(torch.randn(2, 3, 64, 64))
        model(torch.randn(2, 3, 112, 112))   # layer4 at 4x4: oneDNN's path
        assert calls == []
    model(torch.randn(2, 3, 64, 64))
    assert calls == []
    assert all("forward" not in vars(m) for m in model.modules())


def test_the_modules_are_restored_when_the_block_raises():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Conv2d(4, 4, 3, padding=1))
    with pytest.raises(RuntimeError, match="stop"):
        with small_map_weight_grads(model) as eligible:
            assert eligible == 1              # the convolution with a bias keeps autograd's path
            assert "forward" in vars(model[0])
            raise RuntimeError("stop")
    assert all("forward" not in vars(m) for m in model.modules())
