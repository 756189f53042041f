"""Render runs and their processes: no survivors after the parent is killed, one writer per folder,
engine restarts reported, the engine's own name everywhere, one set of engine options for every
command that renders."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from toolchain.errors import AvatarToolError
from toolchain.procguard import FolderLock
from toolchain.render import RenderConfig, RenderFolder, image_path, render_folder

from ._cli import REPO, run_cli

BADGE = REPO / "examples" / "external_engine" / "badge_engine.py"
SIZE = 32


def badge_spec(*flags: str, script: Path | str = BADGE) -> str:
    return "cmd:" + " ".join(shlex.quote(str(a)) for a in (sys.executable, script, *flags))


def scale_of(n: int, seed: int, index: int) -> str:
    """The exact 'scale' of vector ``index`` that a render samples: what the badge engine's hooks match."""
    import importlib.util

    from toolchain.schema import AvatarSchema
    spec = importlib.util.spec_from_file_location("badge_for_hygiene", BADGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return repr(AvatarSchema.from_json(module.SCHEMA).sample(n, seed)[index]["scale"])


# ----- /proc helpers (Linux) -------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _descendants(pid: int) -> set[int]:
    kids, out, todo = _children_map(), set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _mentions(pid: int, marker: str) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scans /proc")
def test_kill9_leaves_no_survivors_and_rerun_completes(tmp_path):
    n = 24
    marker = f"hygiene-{uuid.uuid4().hex}"  # in the engines' command lines, to find them without a parent
    out = tmp_path / marker
    spec = badge_spec("--delay", "0.05", "--fault-switch", str(tmp_path / marker / "never"))
    args = [sys.executable, "-m", "toolchain.cli.main", "render", "--engine", spec, "-n", str(n), "--size", str(SIZE),
            "--out", str(out), "--workers", "2", "--batch-size", "2"]
    parent = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=dict(os.environ, COLUMNS="200", NO_COLOR="1"))
    try:
        deadline = time.monotonic() + 60
        tree: set[int] = set()
        while time.monotonic() < deadline:  # mid-run: some images written, both workers' engines up
            tree |= _descendants(parent.pid)
            engines = [p for p in tree if _alive(p) and _mentions(p, marker)]
            images = list((out / "images").glob("*.png")) if (out / "images").is_dir() else []
            if len(engines) >= 2 and 2 <= len(images) < n:  # one engine per worker
                break
            assert parent.poll() is None, parent.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("the render never got going")
        tree |= _descendants(parent.pid)
        assert len(tree) >= 4  # 2 workers, their engines (and the resource tracker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0 and any(_alive(p) for p in tree):
            time.sleep(0.05)
        survivors = [p for p in tree if _alive(p)]
        strays = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _alive(int(d.name))
                  and _mentions(int(d.name), marker)]
        assert survivors == [] and strays == [], f"alive 2 s after kill -9: {survivors} {strays}"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stderr.close()

    before = {p.name for p in (out / "images").glob("*.png")}
    assert 0 < len(before) < n
    r = run_cli("render", "--engine", spec, "-n", str(n), "--size", str(SIZE), "--out", str(out), "--workers", "2",
                "--batch-size", "2", timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{n - len(before)} rendered, {len(before)} already there" in r.stdout
    rows = [json.loads(line) for line in (out / "vectors.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(n))
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(n)]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:06d}.png" for i in range(n)]
    assert not (out / ".render.lock").exists()


def test_a_folder_has_one_writer(tmp_path):
    out = tmp_path / "r"
    with FolderLock(out):  # another run holds the folder
        with pytest.raises(AvatarToolError, match=rf"being written by another process \(pid {os.getpid()}\)"):
            render_folder(RenderConfig(engine="alter", n=2, size=SIZE, workers=0), out)
        assert not (out / "images").exists()
    summary = render_folder(RenderConfig(engine="alter", n=2, size=SIZE, workers=0), out)  # released: goes ahead
    assert summary.rendered == 2 and not (out / ".render.lock").exists()


def test_lock_of_a_dead_holder_does_not_block(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / ".render.lock").write_text("999999999\n")  # left by a run that was killed
    assert render_folder(RenderConfig(engine="alter", n=1, size=SIZE, workers=0), out).rendered == 1


# ----- engine restarts -------------------------------------------------------------------------
def test_engine_crash_is_reported_and_run_succeeds(tmp_path):
    n, seed, bad = 6, 4, 3
    switch = tmp_path / "crash-once"
    switch.touch()
    spec = badge_spec("--crash-on", scale_of(n, seed, bad), "--fault-switch", str(switch), "--once")
    out = tmp_path / "out"
    r = run_cli("render", "--engine", spec, "-n", str(n), "--seed", str(seed), "--size", str(SIZE), "--out", str(out),
                "--workers", "1", "--batch-size", "2", timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{n} rendered" in r.stdout
    assert not switch.exists()  # it did crash
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert warnings[0].startswith("warning: engine 'badge' was restarted after process exited (exit code 3) while "
                                  "rendering one of vectors #2..#3; last stderr: ")
    assert "crashing on purpose" in warnings[0]
    assert "restarted 1 time(s)" in r.stderr and "every image was rendered" in r.stderr
    restarts = RenderFolder.open(out).engine_restarts
    assert len(restarts) == 1
    assert restarts[0]["engine"] == "badge" and restarts[0]["indices"] == [2, 3] and restarts[0]["exit_code"] == 3
    assert any("crashing on purpose" in line for line in restarts[0]["stderr_tail"])
    assert all(image_path(out, i).is_file() for i in range(n))

    # A resumed run keeps the record of the earlier one and adds nothing when all goes well.
    summary = render_folder(RenderConfig(engine=spec, n=n + 2, seed=seed, size=SIZE, workers=0, batch_size=2), out)
    assert (summary.rendered, summary.restarts) == (2, [])
    assert len(RenderFolder.open(out).engine_restarts) == 1


def test_restart_in_process_is_counted(tmp_path):
    n, seed, bad = 4, 1, 2
    switch = tmp_path / "crash-once"
    switch.touch()
    spec = badge_spec("--crash-on", scale_of(n, seed, bad), "--fault-switch", str(switch), "--once")
    seen = []
    summary = render_folder(RenderConfig(engine=spec, n=n, seed=seed, size=SIZE, workers=0, batch_size=1),
                            tmp_path / "out", on_restart=seen.append)
    assert summary.rendered == n and not summary.failures
    assert [r["indices"] for r in summary.restarts] == [[bad]] and seen == summary.restarts


# ----- names -----------------------------------------------------------------------------------
def test_render_folder_records_the_announced_name_and_where_to_restart(tmp_path, monkeypatch):
    workdir = tmp_path / "engine-home"
    workdir.mkdir()
    shutil.copy(BADGE, workdir / "my_engine.py")  # the file name is not the engine's name
    monkeypatch.chdir(workdir)
    spec = "cmd:" + shlex.quote(sys.executable) + " my_engine.py"  # relative to where it was started
    render_folder(RenderConfig(engine=spec, n=2, size=SIZE, workers=0), tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    folder = RenderFolder.open(tmp_path / "out")
    assert folder.engine == spec and folder.engine_name == "badge" and folder.engine_cwd == str(workdir)
    with folder.open_engine() as engine:  # from another folder
        assert engine.schema.engine == "badge"
    from toolchain.evaluation.evaluate import load_labelled_set
    eval_set = load_labelled_set(tmp_path / "out")
    assert eval_set.engine == "badge" and eval_set.meta["engine_spec"] == spec


# ----- options ---------------------------------------------------------------------------------
RENDERING_COMMANDS = ("render", "baseline", "finetune", "pairs", "build")


def test_every_rendering_command_takes_the_same_engine_options():
    import typer.main

    from toolchain.cli.main import app
    from toolchain.pipeline.config import RenderStage
    from toolchain.render.job import RenderConfig as Config
    group = typer.main.get_command(app)
    expected = {"--workers": Config.workers, "--batch-size": Config.batch_size, "--engine-timeout": Config.timeout_s}
    assert (RenderStage.workers, RenderStage.batch_size, RenderStage.engine_timeout) == tuple(expected.values())
    for name in RENDERING_COMMANDS:
        params = {opt: p for p in group.commands[name].params for opt in p.opts}
        for opt, default in expected.items():
            assert opt in params, f"{name} lacks {opt}"
            p = params[opt]
            if name == "build":  # overrides of the build config, whose defaults are the same
                assert p.default is None and f"({default:g})" in p.help, (name, opt)
            else:
                assert p.default == default, (name, opt, p.default)
    helps = {name: {opt: next(p for p in group.commands[name].params if opt in p.opts).help.split(" Default:")[0]
                    for opt in expected} for name in RENDERING_COMMANDS}
    assert all(h == helps["render"] for h in helps.values())


def test_eval_of_external_engine_renders_needs_no_engine_option(tmp_path, monkeypatch):
    """The issue's path: train on an external engine's renders, evaluate on its held-out renders made
    with a relative command elsewhere; and a set of another engine is refused with the fix named."""
    from toolchain.estimator.train import preset, train
    from toolchain.evaluation.evaluate import evaluate
    from toolchain.pipeline.baseline import renders_to_dataset

    workdir = tmp_path / "engine-home"
    workdir.mkdir()
    shutil.copy(BADGE, workdir / "my_engine.py")
    monkeypatch.chdir(workdir)
    spec = "cmd:" + shlex.quote(sys.executable) + " my_engine.py"
    render_folder(RenderConfig(engine=spec, n=12, seed=0, size=SIZE, workers=0), tmp_path / "train-renders")
    render_folder(RenderConfig(engine=spec, n=4, seed=1, size=SIZE, workers=0), tmp_path / "heldout")
    monkeypatch.chdir(tmp_path)
    renders_to_dataset(tmp_path / "train-renders", tmp_path / "ds", 12)
    cfg = preset("tiny", epochs=1, batch_size=4)
    cfg.input_size = 32
    with pytest.warns(UserWarning):
        train([tmp_path / "ds"], tmp_path / "run", cfg, device="cpu")
    model = tmp_path / "run" / "estimator.pt"

    report = evaluate(model, tmp_path / "heldout", tmp_path / "eval")
    assert report["n"] == 4 and report["engine"] == spec

    render_folder(RenderConfig(engine="alter", n=2, size=SIZE, workers=0), tmp_path / "alter")
    with pytest.raises(AvatarToolError, match=r"labelled for engine 'alter'.*pass --engine SPEC"):
        evaluate(model, tmp_path / "alter", tmp_path / "eval2")


def test_a_render_cut_short_is_rendered_again(tmp_path):
    """Renders are renamed into place without an fsync each; a file cut short (a power cut) must not
    count as done."""
    cfg = RenderConfig(engine="alter", n=3, size=SIZE, workers=0)
    render_folder(cfg, tmp_path / "r")
    whole = image_path(tmp_path / "r", 1).read_bytes()
    image_path(tmp_path / "r", 1).write_bytes(whole[: len(whole) // 2])
    (tmp_path / "r" / "masks" / "000002.png").write_bytes(b"")
    summary = render_folder(cfg, tmp_path / "r")
    assert (summary.rendered, summary.skipped) == (2, 1)
    assert image_path(tmp_path / "r", 1).read_bytes() == whole
