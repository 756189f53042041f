"""Engines from outside the toolchain: external commands (JSON-lines protocol), ``module:Class``
specs and ``swiftavatar.engines`` entry points, including how failures are reported and resumed."""
from __future__ import annotations

import importlib.util
import json
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from toolchain.engines.external import ExternalEngine
from toolchain.engines.registry import create_engine, list_engines
from toolchain.errors import EngineError, EngineNotFound
from toolchain.render import RenderConfig, image_path, mask_path, render_folder
from toolchain.render.job import EngineRestartWarning
from toolchain.schema import AvatarSchema

from ._cli import run_cli
from .plugin_engines import TinyEngine

REPO = Path(__file__).resolve().parents[1]
BADGE = REPO / "examples" / "external_engine" / "badge_engine.py"
SIZE = 64


def _load_badge_module():
    spec = importlib.util.spec_from_file_location("badge_engine_example", BADGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


badge = _load_badge_module()
BADGE_SCHEMA = AvatarSchema.from_json(badge.SCHEMA)


def badge_spec(*flags: str) -> str:
    return "cmd:" + " ".join(shlex.quote(a) for a in (sys.executable, str(BADGE), *flags))


def scale_of(n: int, seed: int, index: int) -> str:
    """The exact 'scale' of vector ``index`` that render_folder will sample: the test hooks' selector."""
    return repr(BADGE_SCHEMA.sample(n, seed)[index]["scale"])


def mtimes(out: Path, indices) -> dict[int, int]:
    return {i: image_path(out, i).stat().st_mtime_ns for i in indices}


# ----- the example engine ----------------------------------------------------------------------
def test_badge_engine_schema_and_render():
    with create_engine(badge_spec(), timeout_s=20) as engine:
        assert isinstance(engine, ExternalEngine)
        schema = engine.schema
        assert engine.name == "badge" and engine.supports_masks
        assert schema.to_json() == BADGE_SCHEMA.to_json()
        assert schema.parts == ("background", "badge")
        assert [(p.name, p.kind) for p in schema.params] == [("color", "discrete"), ("shape", "discrete"),
                                                             ("scale", "continuous")]
        vectors = engine.sample(4, seed=3) + [{"color": "red", "shape": "triangle", "scale": 0.5}]
        batch = engine.render(vectors, size=SIZE, masks=True)

    assert batch.images.shape == (5, SIZE, SIZE, 3) and batch.images.dtype == np.uint8
    assert batch.masks is not None and batch.masks.shape == (5, SIZE, SIZE) and batch.masks.dtype == np.uint8
    assert set(np.unique(batch.masks)) <= {0, 1}
    differs = (batch.images != np.array(badge.BACKGROUND, np.uint8)).any(axis=-1)
    assert np.array_equal(batch.masks != 0, differs)  # the mask is exactly the drawn badge
    assert (batch.masks.reshape(5, -1).sum(axis=1) > 0).all()
    # the labelled vector: a red triangle, narrow at the top, wide at the bottom
    red = (batch.images[4] == badge.COLORS["red"]).all(axis=-1)
    assert red.any()
    rows = batch.masks[4].sum(axis=1)
    assert rows[SIZE // 2 - 12] < rows[SIZE // 2 + 12]


def test_engine_without_masks_resumes(tmp_path):
    """An engine that says masks: false gets no masks and a rerun skips everything it rendered."""
    with create_engine(badge_spec("--no-masks"), timeout_s=20) as engine:
        assert not engine.supports_masks
        assert engine.render(engine.sample(2, 0), size=SIZE, masks=True).masks is None
    cfg = RenderConfig(engine=badge_spec("--no-masks"), n=3, size=SIZE, workers=0, timeout_s=20)
    first = render_folder(cfg, tmp_path / "out")
    assert (first.rendered, first.skipped, first.has_masks) == (3, 0, False)
    second = render_folder(cfg, tmp_path / "out")
    assert (second.rendered, second.skipped) == (0, 3)


# ----- faults ----------------------------------------------------------------------------------
N, SEED, BAD = 5, 7, 1  # batches [0, 1, 2] and [3, 4]; vector #1 fails

FAULTS = {
    "crash": ("--crash-on", "process exited unexpectedly (exit code 3)", 20.0),
    "hang": ("--hang-on", "no reply to 'render' within 2 s", 2.0),
    "wrong-size": ("--wrong-size-on", f"is {SIZE // 2}x{SIZE // 2}, expected {SIZE}x{SIZE}", 20.0),
    "missing-file": ("--missing-file-on", "no such file was written", 20.0),
    "error-reply": ("--error-on", "reported an error: refusing to draw", 20.0),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_named_and_rerun_renders_only_missing(tmp_path, fault):
    flag, detail, timeout = FAULTS[fault]
    switch = tmp_path / "fault-on"
    switch.touch()
    spec = badge_spec(flag, scale_of(N, SEED, BAD), "--fault-switch", str(switch))
    cfg = RenderConfig(engine=spec, n=N, seed=SEED, size=SIZE, workers=0, batch_size=3, timeout_s=timeout)
    out = tmp_path / "out"

    with warnings.catch_warnings(record=True) as caught, pytest.raises(EngineError) as info:
        warnings.simplefilter("always")
        render_folder(cfg, out)
    err = info.value
    assert err.engine == "badge" and err.index == BAD
    assert str(err).startswith(f"engine 'badge', vector #{BAD}: ")
    # A crash or a hang costs the engine process (the batch, then the vector alone): each loss is
    # reported and recorded; an engine that answers with a reason keeps running.
    lost = 2 if fault in ("crash", "hang") else 0
    restarts = json.loads((out / "render.json").read_text())["engine_restarts"]
    assert [r["indices"] for r in restarts] == [[0, 1, 2], [BAD]][:lost]
    assert all(r["engine"] == "badge" for r in restarts)
    assert len([w for w in caught if issubclass(w.category, EngineRestartWarning)]) == lost
    assert detail in str(err)
    assert "1 vector(s) failed" in str(err)

    good = [i for i in range(N) if i != BAD]
    assert all(image_path(out, i).is_file() and mask_path(out, i).is_file() for i in good)
    assert not image_path(out, BAD).exists()
    before = mtimes(out, good)

    switch.unlink()  # the engine is "fixed"; the command line, and so render.json, stays the same
    summary = render_folder(cfg, out)
    assert (summary.rendered, summary.skipped, summary.failures) == (1, N - 1, [])
    assert image_path(out, BAD).is_file() and mask_path(out, BAD).is_file()
    assert mtimes(out, good) == before


def test_newer_protocol_is_refused(tmp_path):
    switch = tmp_path / "fault-on"
    switch.touch()
    spec = badge_spec("--protocol", "2", "--fault-switch", str(switch))
    with create_engine(spec, timeout_s=20) as engine:
        with pytest.raises(EngineError, match="speaks protocol version 2, this avatartool speaks 1"):
            engine.schema  # noqa: B018

    cfg = RenderConfig(engine=spec, n=3, size=SIZE, workers=0, timeout_s=20)
    with pytest.raises(EngineError) as info:
        render_folder(cfg, tmp_path / "out")
    assert str(info.value).startswith("engine 'badge_engine': speaks protocol version 2")
    assert not (tmp_path / "out" / "images").exists()

    switch.unlink()
    summary = render_folder(cfg, tmp_path / "out")
    assert (summary.rendered, summary.skipped) == (3, 0)


def test_crash_with_two_workers(tmp_path):
    n, bad = 6, 3
    switch = tmp_path / "fault-on"
    switch.touch()
    spec = badge_spec("--crash-on", scale_of(n, SEED, bad), "--fault-switch", str(switch))
    cfg = RenderConfig(engine=spec, n=n, seed=SEED, size=SIZE, workers=2, batch_size=2, timeout_s=20)
    out = tmp_path / "out"

    with pytest.raises(EngineError) as info:
        render_folder(cfg, out)
    err = info.value
    assert (err.engine, err.index) == ("badge", bad)
    message = str(err)
    assert message.startswith(f"engine 'badge', vector #{bad}: process exited unexpectedly (exit code 3)")
    assert message.count("engine 'badge'") == 1 and message.count("(vector: ") == 1  # not wrapped twice
    good = [i for i in range(n) if i != bad]
    assert [i for i in range(n) if image_path(out, i).exists()] == good
    before = mtimes(out, good)

    switch.unlink()
    summary = render_folder(cfg, out)
    assert (summary.rendered, summary.skipped) == (1, n - 1)
    assert mtimes(out, good) == before


# ----- module:Class ----------------------------------------------------------------------------
def test_module_class_spec(tmp_path):
    engine = create_engine("tests.plugin_engines:TinyEngine")
    assert isinstance(engine, TinyEngine) and engine.schema.engine == "tiny"
    # workers=1: a spawn worker process must import tests.plugin_engines by itself
    cfg = RenderConfig(engine="tests.plugin_engines:TinyEngine", n=3, size=SIZE, workers=1)
    summary = render_folder(cfg, tmp_path / "out")
    assert (summary.rendered, summary.skipped, summary.has_masks) == (3, 0, True)
    assert all(image_path(tmp_path / "out", i).is_file() for i in range(3))


@pytest.mark.parametrize("spec, message", [
    ("tests.plugin_engines:NotAnEngine", "not a subclass of toolchain.engines.base.Engine"),
    ("tests.plugin_engines:Missing", "module 'tests.plugin_engines' has no attribute 'Missing'"),
    ("tests.no_such_module:Engine", "cannot import module 'tests.no_such_module'"),
])
def test_bad_module_class_spec(spec, message):
    with pytest.raises(EngineNotFound, match=message):
        create_engine(spec)


# ----- entry points ----------------------------------------------------------------------------
def _fake_distribution(root: Path, entry_points: dict[str, str]) -> None:
    dist = root / "tiny_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text("[swiftavatar.engines]\n" + lines)


def test_entry_point_engine(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, {"tiny_ep": "tests.plugin_engines:TinyEngine"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ("tiny_ep", "plug-in tests.plugin_engines:TinyEngine") in list_engines()
    assert isinstance(create_engine("tiny_ep"), TinyEngine)
    with pytest.raises(EngineNotFound, match="Known engines: .*tiny_ep"):
        create_engine("no_such_engine")
    # the spec travels to a spawn worker as a string; the worker finds the entry point too
    cfg = RenderConfig(engine="tiny_ep", n=2, size=SIZE, workers=1)
    assert render_folder(cfg, tmp_path / "out").rendered == 2


def test_broken_entry_points(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, {"broken_ep": "tests.plugin_engines:DoesNotExist",
                                  "gone_ep": "no_such_package.engines:Engine",
                                  "wrong_ep": "tests.plugin_engines:NotAnEngine"})
    monkeypatch.syspath_prepend(str(tmp_path))
    names = [name for name, _ in list_engines()]
    assert {"broken_ep", "gone_ep", "wrong_ep"} <= set(names)
    with pytest.raises(EngineNotFound, match=r"plug-in engine 'broken_ep' \(tests.plugin_engines:DoesNotExist\) "
                                             "failed to load: .*DoesNotExist"):
        create_engine("broken_ep")
    with pytest.raises(EngineNotFound, match="plug-in engine 'gone_ep' .* failed to load: .*no_such_package"):
        create_engine("gone_ep")
    with pytest.raises(EngineNotFound, match="entry point 'wrong_ep' .* not a subclass"):
        create_engine("wrong_ep")


# ----- command line ----------------------------------------------------------------------------
def test_cli_render_fault_is_one_line_then_resumes(tmp_path):
    n, bad = 4, 1
    switch = tmp_path / "fault-on"
    switch.touch()
    spec = badge_spec("--crash-on", scale_of(n, 0, bad), "--fault-switch", str(switch))
    args = ["render", "--engine", spec, "-n", str(n), "--size", str(SIZE), "--out", str(tmp_path / "out"),
            "--workers", "0", "--batch-size", "2"]

    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    assert line.startswith(f"error: engine 'badge', vector #{bad}: process exited unexpectedly (exit code 3)")
    assert "[test hook: --crash-on]" in line  # engine stderr shown verbatim, not read as rich markup
    assert "rerun the same command" in line and line.rstrip().endswith("})")

    switch.unlink()
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "1 rendered, 3 already there" in proc.stdout


def test_cli_unknown_engine_is_one_line():
    proc = run_cli("render", "--engine", "no_such_engine", "-n", "1")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: unknown engine 'no_such_engine'") and "docs/engine-protocol.md" in lines[-1]
