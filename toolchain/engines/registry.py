"""Turn an engine name on the command line into an ``Engine``.

Four ways to name one, tried in this order:

1. a built-in name (``alter``, ``morph``);
2. ``cmd:<command line>`` — an external program speaking the JSON-lines protocol;
3. ``package.module:ClassName`` — any importable ``Engine`` subclass;
4. the name of an entry point in the group ``swiftavatar.engines`` (how a pip package registers one).

Specs are plain strings so worker processes can rebuild the engine themselves.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib.metadata import entry_points

from ..errors import EngineNotFound
from .base import Engine

ENTRY_POINT_GROUP = "swiftavatar.engines"
EXTERNAL_PREFIX = "cmd:"
_MODULE_CLASS = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _builtins() -> dict[str, type[Engine]]:
    from .alter import AlterEngine
    from .morph import MorphEngine
    return {"alter": AlterEngine, "morph": MorphEngine}


BUILTIN_NAMES = ("alter", "morph")


@dataclass(frozen=True)
class EngineSpec:
    """A picklable recipe for an engine: the spec string plus options for external engines."""

    spec: str
    timeout_s: float = 60.0
    cwd: str | None = None  # where an external command runs (its relative paths resolve there)

    def create(self) -> Engine:
        return create_engine(self.spec, timeout_s=self.timeout_s, cwd=self.cwd)


def list_engines() -> list[tuple[str, str]]:
    """(name, where it comes from) for built-ins and installed entry points."""
    rows = [(name, "built-in") for name in BUILTIN_NAMES]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN_NAMES:
            rows.append((ep.name, f"plug-in {ep.value}"))
    return rows


def _check_engine_class(obj: object, where: str) -> type[Engine]:
    if not (isinstance(obj, type) and issubclass(obj, Engine)):
        raise EngineNotFound(f"{where} is {obj!r}, not a subclass of toolchain.engines.base.Engine")
    return obj


def create_engine(spec: str, timeout_s: float = 60.0, cwd: str | None = None) -> Engine:
    """Build the engine named by ``spec`` (see the module docstring). ``cwd``: the folder an external
    command runs in (default: the current one)."""
    spec = spec.strip()
    builtins = _builtins()
    if spec in builtins:
        return builtins[spec]()
    if spec.startswith(EXTERNAL_PREFIX):
        from .external import ExternalEngine
        command = spec[len(EXTERNAL_PREFIX):].strip()
        if not command:
            raise EngineNotFound("'cmd:' needs a command line after it, e.g. --engine 'cmd:python my_engine.py'")
        return ExternalEngine(command, timeout_s=timeout_s, cwd=cwd)
    if _MODULE_CLASS.match(spec):
        module_name, class_name = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise EngineNotFound(f"cannot import module '{module_name}' for engine '{spec}': {exc}") from None
        if not hasattr(module, class_name):
            raise EngineNotFound(f"module '{module_name}' has no attribute '{class_name}'")
        return _check_engine_class(getattr(module, class_name), f"'{spec}'")()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must not take the CLI down with a traceback
                raise EngineNotFound(f"plug-in engine '{spec}' ({ep.value}) failed to load: {exc}") from None
            return _check_engine_class(obj, f"entry point '{spec}' ({ep.value})")()
    known = ", ".join(name for name, _ in list_engines())
    raise EngineNotFound(f"unknown engine '{spec}'. Known engines: {known}. You can also pass 'package.module:Class' "
                         "or 'cmd:<command>' for an external engine (see docs/engine-protocol.md)")
