"""Shared output for benchmarks: results/<name>.json (machine, versions, raw numbers) + results/<name>.md."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


#: CPU features that decide int8 and fp32 kernel speed (XNNPACK, onnxruntime): without a VNNI extension an int8
#: convolution runs about as fast as fp32 (measured 2026-12-04: ResNet-18 at 224 px, 25 ms both, 2 threads), with
#: one ~3-4x faster, so latency tables from the two kinds of machine differ by that much.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
#: The int8 dot-product extensions among them (x86 VNNI/AMX, Arm dotprod/i8mm).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_features() -> dict[str, Any]:
    """The CPU model and which of :data:`SIMD_FLAGS` it has (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model": model, "simd": [f for f in SIMD_FLAGS if f in flags]}


def cpu_note(cpu: dict[str, Any]) -> str:
    """``CPU MODEL: avx2, fma; no int8 dot product (VNNI)`` for a report's machine line."""
    if not cpu:
        return "CPU features unknown"
    simd = cpu.get("simd", [])
    dot = [f for f in simd if f in INT8_DOT_FLAGS]
    int8 = f"int8 dot product ({', '.join(dot)})" if dot else "no int8 dot product (VNNI)"
    return f"CPU {cpu.get('model') or '?'}: {', '.join(simd) or 'none of ' + '/'.join(SIMD_FLAGS)}; {int8}"


def machine_info(packages: Sequence[str] = ("numpy", "skia-python", "torch", "onnxruntime")) -> dict[str, Any]:
    versions = {}
    for p in packages:
        try:
            versions[p] = version(p)
        except PackageNotFoundError:
            pass
    return {"python": sys.version.split()[0], "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "cpu": cpu_features(), "load_average_1m": round(os.getloadavg()[0], 2), "packages": versions, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


BUSY_LOAD_PER_CORE = 1.0   # more runnable processes than cores: timings include waiting for a core


def load_note(load: float, cores: int | None = None) -> str:
    """``load average L (P per core) at start``, plus a warning when the machine was busier than it has cores."""
    cores = cores or os.cpu_count() or 1
    per_core = load / cores
    busy = (f"; busy: more runnable processes than cores (> {BUSY_LOAD_PER_CORE:g} per core), so timings include "
            "waiting for a core" if per_core > BUSY_LOAD_PER_CORE else "")
    return f"load average {load:.2f} ({per_core:.2f} per core) at start{busy}"


def write_report(name: str, data: dict[str, Any], headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 notes: str = "", out_dir: Path = RESULTS, stamp: str = "") -> tuple[Path, Path]:
    """``out_dir/<name>.json`` (machine, versions, raw numbers) and ``.md``; ``stamp`` is a line under the title
    (e.g. the build run, commit and command that produced the numbers)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine_info(), **data}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"# {name}", "", f"Machine: {payload['machine']['platform']}, {payload['machine']['cpu_count']} CPUs, "
             f"{cpu_note(payload['machine']['cpu'])}, "
             f"Python {payload['machine']['python']}, {load_note(payload['machine']['load_average_1m'])}, "
             f"{payload['machine']['date']}", ""] + ([stamp, ""] if stamp else [])
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "---|" * len(headers))
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    if notes:
        lines += ["", notes]
    md_path = out_dir / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def write_report_with_figure(name: str, data: dict[str, Any], headers: Sequence[str], rows: Sequence[Sequence[Any]],
                             notes: str, out_dir: Path, stamp: str, fig: Any, caption: str) -> tuple[Path, Path]:
    """:func:`write_report` plus ``out_dir/<name>.png`` (a matplotlib figure) shown under the table; prints the
    markdown and where both went."""
    from toolchain.atomic_io import save_figure_atomic
    out_dir.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(out_dir / f"{name}.png", fig, dpi=110)
    j, m = write_report(name, data, headers, rows, notes, out_dir=out_dir, stamp=stamp)
    with open(m, "a") as f:
        f.write(f"\n![{caption}]({name}.png)\n")
    print(m.read_text())
    print(f"wrote {j}, {m}")
    return j, m
