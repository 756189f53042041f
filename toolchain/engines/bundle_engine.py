"""Which engine a bundle was built with, and how ``predict --render`` starts it again.

The build records the engine spec in the bundle manifest (``engine_spec``, optional metadata; see
``docs/model-contract.md``)::

    {"spec": "cmd:python badge_engine.py", "kind": "cmd", "cwd": "/home/me/engine", "name": "badge",
     "host": "build-box", "plugin": null}

``kind`` is ``built-in`` (``alter``), ``plug-in`` (an installed ``swiftavatar.engines`` entry point; ``plugin``
names its ``module:attr``), ``module`` (``package.module:Class``) or ``cmd`` (an external command, run in ``cwd``).

A bundle is data someone hands you, and a ``cmd`` spec is a command line: it is never run silently. Every
command is printed before it runs, and a command recorded in a bundle made *elsewhere* runs only with
``--trust-bundle-engine`` (or is replaced by ``--engine SPEC``). "Made here" means a build on this machine
recorded exactly this command and working folder in the local trust list (:func:`trust_file`), which the
exporter appends to when it writes a bundle with a ``cmd`` engine. That list cannot be forged by the bundle (a
hostname or path in the manifest could be), and moving the bundle to another folder keeps it trusted.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import AvatarToolError, EngineError, EngineNotFound
from .base import Engine
from .registry import BUILTIN_NAMES, ENTRY_POINT_GROUP, EXTERNAL_PREFIX, _MODULE_CLASS, create_engine

KINDS = ("built-in", "plug-in", "module", "cmd")
TRUST_FLAG = "--trust-bundle-engine"


def engine_record(spec: str, cwd: str | None = None, name: str | None = None) -> dict[str, Any]:
    """The manifest's ``engine_spec`` for an engine started as ``spec`` (an external command in ``cwd``)."""
    from importlib.metadata import entry_points
    spec = spec.strip()
    plugin = None
    if spec in BUILTIN_NAMES:
        kind = "built-in"
    elif spec.startswith(EXTERNAL_PREFIX):
        kind = "cmd"
        cwd = str(Path(cwd or os.getcwd()).resolve())
    elif _MODULE_CLASS.match(spec):
        kind = "module"
    else:
        kind = "plug-in"
        plugin = next((ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec), None)
    return {"spec": spec, "kind": kind, "cwd": cwd if kind == "cmd" else None, "name": name or spec,
            "host": socket.gethostname(), "plugin": plugin}


# ----- the local trust list ---------------------------------------------------------------------------------
def trust_file() -> Path:
    """``$SWIFTAVATAR_CACHE/trusted-engines.json`` (default ``~/.cache/swiftavatar``)."""
    from sdk_python.detector_models import cache_dir
    return cache_dir() / "trusted-engines.json"


def _trusted() -> list[dict[str, str]]:
    try:
        data = json.loads(trust_file().read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def remember_engine(record: dict[str, Any]) -> None:
    """Add a ``cmd`` record's command and working folder to this machine's trust list (the exporter calls this:
    a build here ran that command already)."""
    if record.get("kind") != "cmd":
        return
    from ..atomic_io import atomic_write_json
    entry = {"spec": record["spec"], "cwd": record["cwd"]}
    known = _trusted()
    if entry not in known:
        trust_file().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(trust_file(), known + [entry])


def made_here(record: dict[str, Any]) -> bool:
    """Whether a build on this machine recorded this command in this working folder (and the folder exists)."""
    return (bool(record.get("cwd")) and Path(record["cwd"]).is_dir()
            and {"spec": record.get("spec"), "cwd": record.get("cwd")} in _trusted())


# ----- starting the engine for a bundle ----------------------------------------------------------------------
def open_bundle_engine(manifest: dict[str, Any], override: Optional[str] = None, trust: bool = False,
                       say: Callable[[str], None] = lambda msg: None, timeout_s: float = 60.0) -> Engine:
    """Start the engine that renders a bundle's vectors: ``override`` (``--engine SPEC``, an external command run
    in the current folder) if given, else the bundle's recorded ``engine_spec``, else its engine name.

    Checks that the engine's parameters are the bundle's, so vectors are never drawn by the wrong engine.

    Raises:
        AvatarToolError: no way to start the engine, a ``cmd`` engine recorded elsewhere without ``trust``, an
            engine that does not start, or one whose schema is not the bundle's; each names the fix.
    """
    rec = manifest.get("engine_spec")
    name = manifest.get("engine", "?")
    if override:
        spec, cwd, origin = override, None, "--engine"
        if override.strip().startswith(EXTERNAL_PREFIX):
            say(f"rendering with --engine: running `{override.strip()[len(EXTERNAL_PREFIX):].strip()}` in {os.getcwd()}")
    elif isinstance(rec, dict) and rec.get("spec"):
        spec, cwd, origin = rec["spec"], rec.get("cwd"), "the bundle's recorded engine"
        if rec.get("kind") == "cmd":
            command = spec[len(EXTERNAL_PREFIX):].strip()
            where = f"in {cwd}" + ("" if cwd and Path(cwd).is_dir() else " (that folder does not exist here)")
            if not made_here(rec) and not trust:
                raise AvatarToolError(
                    f"the bundle's engine '{name}' is an external command recorded by a build on "
                    f"{rec.get('host') or 'another machine'}: `{command}` {where}. A bundle made elsewhere does not start "
                    f"commands by itself: pass --engine 'cmd:<command>' (run from the engine's folder) to say how to "
                    f"start it here, or {TRUST_FLAG} to run the recorded command")
            if not (cwd and Path(cwd).is_dir()):
                raise AvatarToolError(f"the bundle's engine command `{command}` ran in {cwd}, which does not exist "
                                      "here: pass --engine 'cmd:<command>' from the folder that holds the engine")
            say(f"rendering with the bundle's engine: running `{command}` in {cwd}"
                + ("" if made_here(rec) else f" ({TRUST_FLAG})") + "; --engine SPEC overrides")
    else:
        spec, cwd, origin = name, None, "the bundle's engine name (the bundle records no engine spec)"
    try:
        engine = create_engine(spec, timeout_s=timeout_s, cwd=cwd)
        schema = engine.schema   # starts an external engine: a failure to start surfaces here
    except (EngineNotFound, EngineError, OSError) as exc:
        fix = _fix(rec if origin.startswith("the bundle's recorded") else None, spec)
        raise AvatarToolError(f"cannot start the engine for '{name}' from {origin} ({spec}): {exc}. {fix}") from None
    _check_schema(engine, schema.to_json(), manifest, spec)
    return engine


def _fix(rec: Optional[dict[str, Any]], spec: str) -> str:
    if rec and rec.get("kind") == "plug-in":
        return (f"Install the package that provides the plug-in engine '{spec}'"
                + (f" ({rec['plugin']})" if rec.get("plugin") else "") + ", or pass --engine SPEC")
    if rec and rec.get("kind") == "module":
        return f"Make '{spec.split(':')[0]}' importable (install it or set PYTHONPATH), or pass --engine SPEC"
    return ("Pass --engine SPEC: a built-in name, a plug-in, 'package.module:Class' or 'cmd:<command>' run from the "
            "engine's folder (see `avatartool engines list`)")


def _check_schema(engine: Engine, got: dict[str, Any], manifest: dict[str, Any], spec: str) -> None:
    want = manifest.get("schema") or {}

    def params(s: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(p.get("name"), p.get("kind"), tuple(p.get("options") or ()), p.get("low"), p.get("high"))
                for p in s.get("params", [])]
    if params(got) != params(want):
        missing = sorted({p[0] for p in params(want)} - {p[0] for p in params(got)})
        extra = sorted({p[0] for p in params(got)} - {p[0] for p in params(want)})
        if hasattr(engine, "close"):
            engine.close()
        raise AvatarToolError(f"engine {spec} has other parameters than the bundle's engine '{manifest.get('engine')}'"
                              + (f" (missing {missing[:5]})" if missing else "") + (f" (extra {extra[:5]})" if extra else "")
                              + (" (same names, other options or ranges)" if not (missing or extra) else "")
                              + ": pass --engine SPEC naming the engine the bundle was built for")
