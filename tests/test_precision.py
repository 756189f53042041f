"""GAN training arithmetic: how ``auto`` resolves, that the choice reaches the weights and the records, and
that a run never silently continues in the other one."""
from __future__ import annotations

import json

import pytest
import torch

from toolchain import precision as prec
from toolchain.errors import AvatarToolError
from toolchain.generators.io import load_generator
from toolchain.generators.train_real import train_preset, train_real

from tests.test_generators import FAST, MICRO, _mask_folder


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / f"cpuinfo-{abs(hash(flags))}"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return str(path)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    assert prec.cpu_has_native_bf16(_cpuinfo(tmp_path, "avx2 fma amx_tile amx_bf16 amx_int8"))
    assert prec.cpu_has_native_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert not prec.cpu_has_native_bf16(_cpuinfo(tmp_path, "avx2 fma avx512f avx512_vnni"))
    assert not prec.cpu_has_native_bf16(str(tmp_path / "no-such-file"))


def test_auto_picks_bf16_on_cuda_and_on_native_bf16_cpus_only(monkeypatch):
    for native in (True, False):
        monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda native=native: native)
        assert prec.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
        assert prec.resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
        assert prec.resolve_precision("auto", "cuda:1") == "bf16"
        assert prec.resolve_precision("fp32", "cuda") == "fp32" and prec.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(AvatarToolError, match=r"real\.precision='fp16'.*auto, bf16, fp32"):
        prec.check_precision("fp16", key="real.precision")


def test_build_settings_are_checked_before_any_stage():
    from toolchain.pipeline.config import resolve_config
    assert resolve_config("alter", overrides=["real.precision=fp32"]).real.precision == "fp32"
    for key in ("real.precision", "avatar.precision", "pairs.precision"):
        with pytest.raises(AvatarToolError, match=key.replace(".", r"\.")):
            resolve_config("alter", overrides=[f"{key}=half"])


def test_the_pairs_stage_inverts_in_the_resolved_arithmetic(monkeypatch):
    """``pairs.precision`` reaches the inversion resolved (never ``auto``) and is part of the dataset's
    fingerprint, so a dataset begun in one arithmetic is not resumed in the other."""
    from types import SimpleNamespace
    from toolchain.pipeline.config import resolve_config
    from toolchain.pipeline.stages.pairs import pairs_config

    def inversion_of(setting: str):
        ctx = SimpleNamespace(cfg=resolve_config("alter", overrides=[f"pairs.precision={setting}"]),
                              output=lambda stage: {"folder": "renders"})
        return pairs_config(ctx)
    for native in (True, False):
        monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda native=native: native)
        assert inversion_of("auto").inversion.precision == ("bf16" if native else "fp32")
        assert inversion_of("fp32").inversion.precision == "fp32" and inversion_of("bf16").inversion.precision == "bf16"
    assert inversion_of("fp32").fingerprint() != inversion_of("bf16").fingerprint()
    # the smoke preset pins float32 (bf16 saves seconds there); the cpu preset leaves it to the CPU
    assert resolve_config("alter").pairs.precision == "fp32"
    assert resolve_config("alter", preset="cpu").pairs.precision == "auto"


def test_the_pairs_stage_passes_the_mask_weight_to_the_inversion():
    from types import SimpleNamespace
    from toolchain.pipeline.config import resolve_config
    from toolchain.pipeline.stages.pairs import pairs_config

    def inversion_of(*overrides: str, preset: str = "smoke"):
        ctx = SimpleNamespace(cfg=resolve_config("morph", preset=preset, overrides=list(overrides)),
                              output=lambda stage: {"folder": "renders"})
        return pairs_config(ctx).inversion
    assert inversion_of("pairs.mask_weight=0.7").lambda_s == 0.7
    assert inversion_of().lambda_s == 0.0
    assert inversion_of(preset="cpu").lambda_s == 0.3


def test_the_arithmetic_reaches_the_weights_and_is_recorded(tmp_path):
    data = _mask_folder(tmp_path / "data")
    runs = {}
    for p in ("fp32", "bf16"):
        train_real(data, tmp_path / p, MICRO, train_preset("tiny", **FAST, precision=p), device="cpu")
        assert json.loads((tmp_path / p / "run.json").read_text())["train"]["precision"] == p
        runs[p], _ = load_generator(tmp_path / p / "generator.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(runs["fp32"].state_dict().values(),
                                                     runs["bf16"].state_dict().values()))
    # "auto" is recorded as what it resolved to on this machine
    train_real(data, tmp_path / "auto", MICRO, train_preset("tiny", **{**FAST, "iters": 1}, precision="auto"), device="cpu")
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["train"]["precision"] == \
        prec.resolve_precision("auto", "cpu")


def test_a_run_does_not_resume_in_the_other_arithmetic(tmp_path):
    data = _mask_folder(tmp_path / "data")
    train_real(data, tmp_path / "run", MICRO, train_preset("tiny", **FAST, precision="fp32"), device="cpu", stop_after=2)
    with pytest.raises(AvatarToolError, match=r"trained in fp32.*continue in bf16.*precision=fp32"):
        train_real(data, tmp_path / "run", MICRO, train_preset("tiny", **FAST, precision="bf16"), device="cpu")
    # a checkpoint from before the setting existed was float32 on a CPU: it resumes as fp32, not as "auto"
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    del ck["identity"]["train"]["precision"]
    torch.save(ck, tmp_path / "run" / "checkpoint.pt")
    s = train_real(data, tmp_path / "run", MICRO, train_preset("tiny", **FAST, precision="fp32"), device="cpu")
    assert s["steps_done"] == FAST["iters"]


def test_cpu_math_flushes_denormals_and_sets_threads():
    from toolchain.torch_utils import configure_cpu_math
    before = torch.get_num_threads()
    torch.set_flush_denormal(False)                           # as a fresh process starts (earlier tests set it)
    # below float32's smallest normal (1.2e-38); made after the reset, since flushing also zeroes the conversion
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0
    try:
        configure_cpu_math(1)
        assert torch.get_num_threads() == 1
        assert (tiny * 1.0).item() == 0.0                     # a denormal operand reads as zero
    finally:
        torch.set_num_threads(before)
    configure_cpu_math(None)                                   # no thread count: left as it is
    assert torch.get_num_threads() == before


def test_gan_speed_times_each_case_in_its_own_process(tmp_path):
    from benchmarks.gan_speed import main
    data = _mask_folder(tmp_path / "data")
    train_real(data, tmp_path / "run" / "g_real", MICRO, train_preset("tiny", **FAST, precision="fp32"), device="cpu")
    main([str(tmp_path / "run"), "--steps", "4", "--threads", "1", "--out", str(tmp_path / "res")])
    out = json.loads((tmp_path / "res" / "gan_speed.json").read_text())
    assert [(c["precision"], c["flush_denormals"]) for c in out["cases"]] == \
        [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    for c in out["cases"]:
        assert c["from_step"] == FAST["iters"] and c["it_per_s"] > 0
        assert c["denormal_reads_as_zero"] is c["flush_denormals"]    # the mode each case claims is the one it ran
    assert "| bf16 | flushed |" in (tmp_path / "res" / "gan_speed.md").read_text()
    with pytest.raises(SystemExit, match="no GAN checkpoint"):
        main([str(tmp_path / "data")])
