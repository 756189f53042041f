"""An engine's schema as text for people (``avatartool engines show``): one line per parameter by default, so an
engine with hundreds of options still fits a terminal; the full option table on request."""
from __future__ import annotations

from ..schema import AvatarSchema, ContinuousParam

FIRST_OPTIONS = 4


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def compact_lines(schema: AvatarSchema, width: int = 80) -> list[str]:
    """One line per parameter: name, kind, option count or range, the first few options, then its default, the part
    it lives on and its "absent" option. Every line fits ``width`` characters (clipped at the end)."""
    cols = []
    for p in schema.params:
        if isinstance(p, ContinuousParam):
            cols.append((p.name, "continuous", f"[{p.low:g}, {p.high:g}]", f"default {p.default:g}", ""))
        else:
            shown = ", ".join(p.options[:FIRST_OPTIONS]) + (", …" if len(p.options) > FIRST_OPTIONS else "")
            cols.append((p.name, "discrete", f"{len(p.options)} options", f"default {p.options[p.default]}", shown))
    name_w = min(max((len(c[0]) for c in cols), default=4), 16)
    ext_w = max((len(c[2]) for c in cols), default=0)
    lines = []
    for p, (name, kind, extent, default, shown) in zip(schema.params, cols):
        tail = "; ".join(t for t in (default, f"part {p.part}" if p.part else "",
                                     f"absent: {p.absent_option}" if getattr(p, "absent_option", None) else "") if t)
        line = f"{_clip(name, name_w):<{name_w}}  {kind:<10}  {extent:<{ext_w}}  " + (f"{shown}  " if shown else "") + f"({tail})"
        lines.append(_clip(line.rstrip(), width))
    return lines


def option_rows(schema: AvatarSchema) -> list[tuple[str, str, str, str]]:
    """(parameter, index, label, note) for every option of every discrete parameter; continuous parameters get
    one row with their range."""
    rows = []
    for p in schema.params:
        if isinstance(p, ContinuousParam):
            rows.append((p.name, "", f"[{p.low:g}, {p.high:g}]", f"continuous, default {p.default:g}"))
            continue
        for i, label in enumerate(p.options):
            notes = [n for n, on in (("default", i == p.default), ("absent", label == p.absent_option)) if on]
            rows.append((p.name, str(i), label, ", ".join(notes)))
    return rows
