"""Helpers for end-to-end tests: run the cellextract CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cellextract.cli"]
# Small but realistic: enough frames and cells for CNMF-E, fast on 2 cores.
SMALL = ["--kind", "1p", "--dims", "64", "64", "--frames", "300", "--neurons", "8", "--fr", "10"]
# Parameters for tiny test movies (few frames: lower seed thresholds, one patch).
FAST = ["--set", "min_corr=0.7", "--set", "min_pnr=6", "--set", "rf=null", "--set", "gSig=3",
        "--set", "gSiz=13"]


def run_cli(*args, cwd=None, check=True, timeout=900) -> subprocess.CompletedProcess:
    """Run the cellextract CLI in a subprocess; return the completed process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([*CLI, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"cellextract {' '.join(map(str, args))} failed "
                             f"({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


