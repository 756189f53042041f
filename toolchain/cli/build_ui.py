"""The build's progress display: one rich progress view for the whole build (stage i of n, items, rate,
ETA) and a line per finished stage."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class RichBuildUI:
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False)
        self.overall: TaskID | None = None
        self.current: TaskID | None = None
        self.name = ""
        self.title = ""

    def __enter__(self) -> "RichBuildUI":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.progress.__exit__(*exc)

    def stage_started(self, index: int, total: int, name: str, title: str, estimate_s: float | None) -> None:
        if self.overall is None:
            self.overall = self.progress.add_task("build", total=total, rate="")
        self.progress.update(self.overall, completed=index - 1, description=f"build: stage {index}/{total} {name}")
        if self.current is not None:
            self.progress.remove_task(self.current)
        self.name, self.title = name, title
        self.current = self.progress.add_task(f"  {name}", total=None, rate="")

    def stage_progress(self, done: float, total: float | None, detail: str = "") -> None:
        if self.current is None:
            return
        task = self.progress.tasks[-1] if self.progress.tasks else None
        rate = ""
        if task is not None and task.speed:
            rate = f"{task.speed:.1f}/s"
        self.progress.update(self.current, completed=done, total=total, rate=rate,
                             description=f"  {self.name}: {escape(detail)}" if detail else f"  {self.name}")

    def stage_finished(self, name: str, status: str, seconds: float) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
            self.current = None
        if self.overall is not None:
            self.progress.advance(self.overall)
        mark = {"skipped": "[dim]skipped (up to date)[/]", "ran": "[green]done[/]", "resumed": "[green]resumed, done[/]"}
        self.console.print(f"  {name:<17} {mark.get(status, status)}" + (f" in {seconds:.1f} s" if status != "skipped" else ""))

    def warn(self, message: str) -> None:
        self.console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)
