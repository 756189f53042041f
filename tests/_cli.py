"""Run ``avatartool`` as a user would: a subprocess from the repository root, wide and without colour so
that messages can be matched as plain single lines."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
