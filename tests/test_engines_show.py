"""`avatartool engines show`: one line per parameter by default (an engine with hundreds of options still fits a
terminal), every option with --options, the schema unchanged with --json."""
from __future__ import annotations

import json

from toolchain.engines.describe import compact_lines, option_rows
from toolchain.engines.registry import create_engine
from toolchain.schema import AvatarSchema

from ._cli import run_cli


def _big_schema() -> AvatarSchema:
    params = [{"name": f"asset_{i:02d}" + ("_with_a_very_long_name_indeed" if i == 19 else ""), "kind": "discrete",
               "options": [f"option_{i}_{k}" for k in range(40)], "default": 3} for i in range(20)]
    params += [{"name": "yaw_degrees", "kind": "continuous", "low": -180.0, "high": 180.0, "default": 0.0}]
    return AvatarSchema.from_json({"engine": "many", "parts": ["background"], "params": params})


def test_compact_is_one_line_per_parameter_within_80_columns():
    schema = _big_schema()
    lines = compact_lines(schema, width=80)
    assert len(lines) == len(schema.params) == 21
    assert all(len(x) <= 80 for x in lines)
    assert "40 options" in lines[0] and "option_0_0, option_0_1, option_0_2" in lines[0]
    assert "(default 0" in lines[-1]
    assert "continuous" in lines[-1] and "[-180, 180]" in lines[-1]
    assert lines[19].startswith("asset_19_with_a…")      # a long name is clipped, the columns stay


def test_options_lists_every_option():
    schema = _big_schema()
    rows = option_rows(schema)
    assert len(rows) == 20 * 40 + 1
    assert ("asset_00", "3", "option_0_3", "default") in rows


def test_cli_compact_options_and_json():
    schema = create_engine("morph").schema
    r = run_cli("engines", "show", "morph")
    assert r.returncode == 0, r.stderr
    body = [x for x in r.stdout.splitlines() if x.strip()]
    assert len(body) == len(schema.params) + 3           # a header line, one per parameter, mask parts, a hint
    assert sum("discrete" in x and "options" in x for x in body) == sum(p.kind == "discrete" for p in schema.params)
    r = run_cli("engines", "show", "morph", "--options")
    assert r.returncode == 0 and "side_part" in r.stdout
    r = run_cli("engines", "show", "morph", "--json")
    assert json.loads(r.stdout) == schema.to_json()
