"""profiles/local and profiles/slurm are valid for the installed Snakemake + Slurm plugin.

Fast, no Slurm needed: a dry run of the toy DAG rejects any unknown profile key.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "cluster" / "toy" / "Snakefile"
PROFILES = {name: REPO / "profiles" / name / "config.v8+.yaml" for name in ("local", "slurm")}


def load(name: str) -> dict:
    return yaml.safe_load(PROFILES[name].read_text())


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_options_exist(name, tmp_path):
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(TOY), "--directory",
                        str(tmp_path), "--profile", str(PROFILES[name].parent), "--dry-run"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "unrecognized arguments" not in r.stderr


def test_local_profile():
    p = load("local")
    assert p["cores"] == "all"
    assert p["rerun-incomplete"] is True and p["printshellcmds"] is True
    assert p["keep-going"] is False and p["show-failed-logs"] is True and p["retries"] == 0
    assert "executor" not in p


def test_slurm_profile():
    p = load("slurm")
    assert p["executor"] == "slurm"
    res = p["default-resources"]
    assert {"slurm_partition", "mem_mb", "runtime"} <= set(res)
    assert p["retries"] >= 1 and p["latency-wait"] >= 10 and p["rerun-incomplete"] is True
    assert p["jobs"] >= 1 and p["show-failed-logs"] is True
    # the test cluster (tests/cluster/slurm.sh) offers the partition the profile asks for
    default_partition = re.search(r'PARTITION="\$\{CELLEXTRACT_SLURM_PARTITION:-(\w+)\}"',
                                  (REPO / "tests" / "cluster" / "slurm.sh").read_text())
    assert default_partition and res["slurm_partition"] == default_partition.group(1)


def test_slurm_profile_threads_name_real_rules():
    threads = load("slurm")["set-threads"]
    assert set(threads) == {"motion_correct", "cnmf_fit", "evaluate"}
    assert all(isinstance(v, int) and v >= 1 for v in threads.values())
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", smk.read_text(), re.M))
    assert set(threads) <= rules, f"set-threads names unknown rules: {set(threads) - rules}"


def test_parallel_rules_grow_memory_per_attempt():
    """profiles/slurm's retries only help if the rules ask for more memory on each attempt."""
    for stage, smk in (("motion_correct", "motion.smk"), ("cnmf_fit", "cnmf.smk"),
                       ("evaluate", "evaluate.smk")):
        text = (REPO / "workflow" / "rules" / smk).read_text()
        block = text[text.index(f"rule {stage}:"):]
        mem = re.search(r"mem_mb\s*=\s*(.+)", block)
        assert mem and "attempt" in mem.group(1), f"{stage}: mem_mb does not use attempt"
