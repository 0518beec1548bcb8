"""The workflow on a real single-node Slurm (started by tests/cluster/slurm.sh; `make test-slurm`).

Shows: jobs are visible in `sacct` with the rule, threads and memory asked for; a DAG completes
on Slurm with the same outputs as a local run (a toy DAG, and the project's own DAG on a small
simulated movie); retries ask for more memory; a failing job is reported as failed with its log;
a run cancelled with SIGINT / SIGTERM leaves no Slurm jobs behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SLURM_SH = REPO / "tests" / "cluster" / "slurm.sh"
TOY = REPO / "tests" / "cluster" / "toy" / "Snakefile"
PROFILE_SLURM = REPO / "profiles" / "slurm"
PROFILE_LOCAL = REPO / "profiles" / "local"
BIN = Path(sys.executable).parent

# Test-only overrides of profiles/slurm: poll Slurm every second instead of after 20 s / 10 s.
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        "--latency-wait", "5"]


# ------------------------------------------------------------------------------------- helpers

@pytest.fixture(scope="session")
def slurm():
    """The test cluster must be up (tests/cluster/slurm.sh start); exports its SLURM_CONF."""
    st = subprocess.run([str(SLURM_SH), "status"], capture_output=True, text=True)
    if st.returncode != 0:
        msg = f"test Slurm not running (start it: {SLURM_SH} start)\n{st.stdout}{st.stderr}"
        if os.environ.get("CELLEXTRACT_SLURM_REQUIRED"):
            pytest.fail(msg)
        pytest.skip(msg)
    env_line = subprocess.run([str(SLURM_SH), "env"], capture_output=True, text=True,
                              check=True).stdout.strip()
    os.environ["SLURM_CONF"] = env_line.split("=", 1)[1]
    return os.environ["SLURM_CONF"]


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args: str, snakefile: Path = TOY, profile: Path = PROFILE_SLURM,
              timeout: float = 240) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
           "--profile", str(profile), *args]
    if profile == PROFILE_SLURM:
        cmd += FAST
    return subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def run_uuid(log_text: str) -> str:
    for line in log_text.splitlines():
        if line.startswith("SLURM run ID:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no 'SLURM run ID' in Snakemake's output:\n" + log_text[-3000:])


def sacct(uuid: str, expect: int | None = None, timeout: float = 20) -> list[dict]:
    """Job records (one per allocation) of one Snakemake run (job name = run UUID)."""
    fields = ["JobIDRaw", "JobName", "State", "AllocCPUS", "ReqMem", "ExitCode", "Comment"]
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-P", "-n", "-S", "now-1days", "--name", uuid,
             "--format=" + ",".join(fields)],
            capture_output=True, text=True, check=True).stdout
        rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
        settled = all(r["State"] not in ("PENDING", "RUNNING") for r in rows)
        if (expect is None or len(rows) >= expect) and settled or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def squeue(uuid: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "--name", uuid, "-o", "%i %T"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def mem_mb(reqmem: str) -> int:
    units = {"M": 1, "G": 1024, "T": 1024 * 1024}
    value = reqmem.rstrip("nc")  # older sacct: 300Mn / 300Mc
    return int(float(value[:-1]) * units[value[-1]])


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


# ------------------------------------------------------------------------------- toy DAG tests

def test_toy_dag_on_slurm_matches_local(slurm, tmp_path):
    r = snakemake(tmp_path / "slurm", "--set-threads", "square=2")
    assert r.returncode == 0, r.stderr[-4000:]
    local = snakemake(tmp_path / "local", "--set-threads", "square=2", "--retries", "1",
                      profile=PROFILE_LOCAL)
    assert local.returncode == 0, local.stderr[-4000:]

    # same outputs
    got, want = tree_digest(tmp_path / "slurm" / "out"), tree_digest(tmp_path / "local" / "out")
    assert set(got) == {"square_a.txt", "square_b.txt", "combined.txt", "flaky.txt"}
    assert got == want

    # every submitted job is in the accounting database, with rule, threads and memory
    jobs = sacct(run_uuid(r.stderr), expect=5)
    by_rule: dict[str, list[dict]] = {}
    for j in jobs:
        rule = j["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        by_rule.setdefault(rule, []).append(j)
    assert sorted(by_rule) == ["combine", "flaky", "square"], jobs
    assert [j["State"] for j in by_rule["square"]] == ["COMPLETED", "COMPLETED"]
    assert all(j["AllocCPUS"] == "2" for j in by_rule["square"])  # --set-threads -> cpus-per-task
    assert by_rule["combine"][0]["State"] == "COMPLETED"
    assert "all" not in by_rule  # localrules stay on the submitting host

    # the flaky job failed once and was retried (profile: retries 2) with more memory
    flaky = sorted(by_rule["flaky"], key=lambda j: int(j["JobIDRaw"]))
    assert [j["State"] for j in flaky] == ["FAILED", "COMPLETED"]
    assert mem_mb(flaky[1]["ReqMem"]) > mem_mb(flaky[0]["ReqMem"])
    assert "attempt mem_mb=800" in (tmp_path / "slurm" / "logs" / "flaky.log").read_text()


def test_failing_job_reported_with_log(slurm, tmp_path):
    work = tmp_path / "fail"
    r = snakemake(work, "--config", "mode=fail", "--retries", "0")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Error in rule broken" in out
    assert "failed, SLURM status is: 'FAILED'" in out
    # show-failed-logs prints the rule's log
    assert "this rule always fails (marker 7f3a)" in out
    assert "marker 7f3a" in (work / "logs" / "broken.log").read_text()
    # the Slurm job's own log is kept for failed jobs and named in the report
    jobs = sacct(run_uuid(r.stderr), expect=1)
    assert len(jobs) == 1 and jobs[0]["State"] == "FAILED" and jobs[0]["ExitCode"].startswith("1")
    slurm_log = work / ".snakemake" / "slurm_logs" / "rule_broken" / f"{jobs[0]['JobIDRaw']}.log"
    assert slurm_log.is_file()
    assert str(slurm_log) in out
    assert not (work / "out" / "broken.txt").exists()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_slow_run(work: Path):
    """Start the toy `slow` rule on Slurm; return (process, stderr path, run UUID) once it runs."""
    work.mkdir(parents=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(TOY), "--directory", str(work),
           "--profile", str(PROFILE_SLURM), *FAST, "--config", "mode=slow"]
    errlog = work / "snakemake.err"
    with open(errlog, "w") as err:
        # A job started in the background of a non-interactive shell (CI, nohup) inherits an
        # ignored SIGINT, and Python keeps it ignored: restore the default so Ctrl-C works.
        proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=_default_sigint)
    uuid = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = errlog.read_text()
        if uuid is None and "SLURM run ID:" in text:
            uuid = run_uuid(text)
        if uuid and any(line.endswith("RUNNING") for line in squeue(uuid)) and \
                (work / "logs" / "slow.log").exists():
            return proc, errlog, uuid
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    if uuid:
        subprocess.run(["scancel", "--name", uuid], check=False)
    pytest.fail("the slow job never ran:\n" + errlog.read_text()[-3000:])


def _finish(proc, uuid) -> list[str]:
    """Make sure nothing is left running; return the run's jobs still in squeue beforehand."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20  # scancel is asynchronous (COMPLETING)
    while (left := squeue(uuid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    subprocess.run(["scancel", "--name", uuid], check=False)
    return left


def test_sigint_cancels_slurm_jobs(slurm, tmp_path):
    """Ctrl-C on Snakemake cancels its Slurm jobs (scancel) and exits."""
    work = tmp_path / "slow"
    proc, errlog, uuid = _start_slow_run(work)
    try:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=240)  # cancelling polls Slurm; slow on a loaded machine
    finally:
        left = _finish(proc, uuid)
    assert rc != 0
    assert left == [], f"Slurm jobs left after SIGINT: {left}"
    jobs = sacct(uuid, expect=1)
    assert jobs and all(j["State"].startswith("CANCELLED") for j in jobs), jobs
    assert not (work / "out" / "slow.txt").exists()


def test_sigterm_is_graceful_then_sigint_cancels(slurm, tmp_path):
    """SIGTERM is Snakemake's graceful stop: running jobs go on, nothing new is submitted; a
    following SIGINT (or Ctrl-C) cancels what still runs."""
    work = tmp_path / "slow"
    proc, errlog, uuid = _start_slow_run(work)
    try:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while "Will exit after finishing currently running jobs" not in errlog.read_text():
            assert time.monotonic() < deadline, errlog.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)
        assert proc.poll() is None  # still waiting for the running job
        assert any(line.endswith("RUNNING") for line in squeue(uuid))
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=240)  # cancelling polls Slurm; slow on a loaded machine
    finally:
        left = _finish(proc, uuid)
    assert rc != 0
    assert left == [], f"Slurm jobs left after SIGTERM + SIGINT: {left}"
    jobs = sacct(uuid, expect=1)
    assert jobs and all(j["State"].startswith("CANCELLED") for j in jobs), jobs


# --------------------------------------------------------------------- the project's own DAG

# Run-specific values that legitimately differ between two runs of the same DAG.
_TIMING = re.compile(r"(_s|_seconds|seconds|frames_per_s|elapsed.*|time.*|date.*|host.*)$")


def _json_without_timing(obj):
    if isinstance(obj, dict):
        return {k: _json_without_timing(v) for k, v in obj.items() if not _TIMING.search(k)}
    if isinstance(obj, list):
        return [_json_without_timing(v) for v in obj]
    return obj


def _hdf5_content(path: Path) -> dict:
    import h5py
    import numpy as np

    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not _TIMING.search(name):
                out[name] = np.asarray(obj[()])
            for k, v in obj.attrs.items():
                if not _TIMING.search(k) and k != "mmap_file":
                    out[f"{name}@{k}"] = np.asarray(v)
        visit("/", f)
        f.visititems(visit)
    return out


def _assert_same_results(a: Path, b: Path) -> None:
    """Same files; byte-identical except logs, timings and the absolute memmap path."""
    import numpy as np

    def files(root):
        return {str(p.relative_to(root)) for p in root.rglob("*")
                if p.is_file() and ".snakemake" not in p.parts and "logs" not in p.parts}

    fa, fb = files(a), files(b)
    assert fa == fb, f"different files: {sorted(fa ^ fb)}"
    assert any(f.endswith(".isxd") for f in fa) and any(f.endswith("caiman_output.hdf5") for f in fa)
    for rel in sorted(fa):
        pa, pb = a / rel, b / rel
        if pa.read_bytes() == pb.read_bytes():
            continue
        if rel.endswith((".hdf5", ".h5")):
            ca, cb = _hdf5_content(pa), _hdf5_content(pb)
            assert ca.keys() == cb.keys(), rel
            for k in ca:
                x, y = ca[k], cb[k]
                same = (np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc"
                        else np.array_equal(x, y))
                assert same, f"{rel}: {k} differs"
        elif rel.endswith(".json"):
            assert _json_without_timing(json.loads(pa.read_text())) == \
                _json_without_timing(json.loads(pb.read_text())), rel
        else:
            raise AssertionError(f"{rel} differs between the Slurm and the local run")


def test_demo_dag_on_slurm_matches_local(slurm, tmp_path):
    """`cellextract run --profile profiles/slurm` on a small simulated 1P movie: every stage is a
    Slurm job, and the results equal those of a local run."""
    movie = tmp_path / "mini.tif"
    subprocess.run([str(BIN / "cellextract"), "simulate", "--kind", "1p", "--dims", "64", "64",
                    "--frames", "300", "--neurons", "8", "--seed", "3", "--out", str(movie)],
                   check=True, env=_env(), capture_output=True)

    def run(out: Path, profile: Path, cores: str, *extra: str):
        cmd = [str(BIN / "cellextract"), "run", str(movie), "--name", "mini", "--out", str(out),
               "--profile", str(profile), "--cores", cores, "--", *extra]
        return subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    # Both runs at once (the local one mostly overlaps the Slurm status waits), both with 2 threads
    # for the parallel stages (set-threads on Slurm, n_processes=2 locally): BLAS / worker sums
    # differ in the last bits with other thread counts.
    local = run(tmp_path / "local", PROFILE_LOCAL, "all")
    on_slurm = run(tmp_path / "slurm", PROFILE_SLURM, "all", *FAST)
    out_local, _ = local.communicate(timeout=420)
    out_slurm, _ = on_slurm.communicate(timeout=420)
    assert local.returncode == 0, out_local[-5000:]
    assert on_slurm.returncode == 0, out_slurm[-5000:]

    jobs = sacct(run_uuid(out_slurm), expect=7)
    rules = sorted(j["Comment"].removeprefix("rule_").split("_wildcards_")[0] for j in jobs)
    assert rules == sorted(["concatenate", "motion_correct", "cnmf_fit", "evaluate",
                            "export_cellsets", "output_metadata", "previews"]), jobs
    assert all(j["State"] == "COMPLETED" for j in jobs), jobs
    cpus = {j["Comment"].removeprefix("rule_").split("_wildcards_")[0]: j["AllocCPUS"] for j in jobs}
    assert cpus["motion_correct"] == cpus["cnmf_fit"] == cpus["evaluate"] == "2"  # set-threads

    _assert_same_results(tmp_path / "local" / "mini", tmp_path / "slurm" / "mini")
