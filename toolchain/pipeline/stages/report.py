"""Stage 8: the report (``RUN/report.md`` and the self-contained ``RUN/report.html``)."""
from __future__ import annotations

from typing import Any

from ..report import write_report
from ..runner import StageContext, read_record


def run(ctx: StageContext) -> dict[str, Any]:
    records = {}
    for name in ctx.upstream:
        rec = read_record(ctx.run_dir / name)
        if rec is not None:
            records[name] = rec
    info = write_report(ctx.run_dir, ctx.cfg.to_json(), records)
    return {"report_md": str((ctx.run_dir / "report.md").resolve()),
            "report_html": str((ctx.run_dir / "report.html").resolve()), "figures": info["figures"],
            "warnings": info["warnings"], "files": [str((ctx.run_dir / "report.html").resolve())]}
