"""Reruns, resumes and reproducibility of the real Snakemake DAG, through `cellextract run`.

What a parameter change reruns is read from Snakemake's own plan (``--dry-run`` job table and
``--summary``) and, after running, from file modification times. The tests of one results
folder (``base``) build on each other in file order: each step passes the cumulative
``--set`` values, so a step run alone still sees a consistent folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from wfhelpers import CLI, FAST, run_cli

pytestmark = pytest.mark.slow

NAME = "m"
TINY = ["--kind", "1p", "--dims", "48", "48", "--frames", "200", "--neurons", "5", "--fr", "10"]

# Every run: the tiny-movie parameters plus one non-default motion parameter.
ARGS = [*FAST, "--set", "max_shifts=4"]
# The cumulative parameter changes of the rerun chain on the ``base`` folder.
QUALITY = ["--set", "min_SNR=5"]
CNMF = [*QUALITY, "--set", "merge_thr=0.8"]
MOTION = [*CNMF, "--set", "max_shifts=3"]

# Files each rule writes (relative to the series folder); the memmap is found by name.
MMAP = "motion/*.mmap"
STAGE_FILES = {
    "concatenate": ["series.json"],
    "resolve_params": ["params.json"],
    "motion_correct": [MMAP, "motion/shifts.csv", "motion/template.npy"],
    "cnmf_fit": ["cnmf/fit.hdf5", "cnmf/summary_images.npz"],
    "evaluate": ["caiman_output.hdf5"],
    "export_cellsets": ["cellset_raw.000.isxd", "cellset_denoised.000.isxd",
                        "neural_events.000.isxd"],
    "output_metadata": ["output_metadata.json"],
    "previews": ["previews/cellset_raw.000.png", "previews/motion.png"],
}
DOWNSTREAM_OF_EVALUATE = {"evaluate", "export_cellsets", "output_metadata", "previews"}
FINAL = ["series.json", "params.json", "caiman_output.hdf5", "cellset_raw.000.isxd",
         "cellset_denoised.000.isxd", "neural_events.000.isxd", "output_metadata.json",
         "previews/cellset_raw.000.png", "previews/motion.png", "cnmf/fit.hdf5",
         "cnmf/summary_images.npz"]


# ----------------------------------------------------------------------------- helpers

def run(movie, out, *args, check=True):
    """``cellextract run`` of the tiny movie with the test parameters (plus ``args``)."""
    return run_cli("run", movie, "--name", NAME, "--out", out, "--cores", "2", *ARGS, *args,
                   check=check)


def output(proc) -> str:
    return proc.stdout + "\n" + proc.stderr


def planned_jobs(proc) -> Counter:
    """Jobs of Snakemake's plan: the first ``Job stats`` table of a dry run (empty if none)."""
    text = output(proc)
    if "Nothing to be done" in text and "Job stats:" not in text:
        return Counter()
    lines = text[text.index("Job stats:"):].splitlines()[1:]
    jobs: Counter = Counter()
    for line in lines:
        parts = line.split()
        if not parts or parts[0] in ("job",) or set(parts[0]) == {"-"}:
            continue
        if parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def summary(proc) -> dict[str, dict]:
    """``--summary`` table: {normalized output path: {rule, status, plan}}."""
    rows = {}
    lines = [ln for ln in proc.stdout.splitlines() if ln.count("\t") >= 5]
    header = lines[0].split("\t")
    assert header[:1] == ["output_file"], proc.stdout[:2000]
    for ln in lines[1:]:
        row = dict(zip(header, ln.split("\t")))
        rows[os.path.normpath(row["output_file"])] = row
    return rows


def resolve(series: Path, rel: str) -> Path:
    if "*" in rel:
        found = sorted(series.glob(rel))
        assert len(found) == 1, (rel, found)
        return found[0]
    return series / rel


def mtimes(series: Path) -> dict[str, int]:
    """Modification time (ns) of every file a rule writes, by (stage, file)."""
    out = {}
    for stage, files in STAGE_FILES.items():
        for rel in files:
            out[f"{stage}:{rel}"] = resolve(series, rel).stat().st_mtime_ns
    return out


def assert_reran(before: dict, after: dict, stages: set[str]) -> None:
    """Files of ``stages`` were rewritten, every other rule's files are untouched."""
    rewritten = sorted(k for k in before if after[k] != before[k])
    expected = sorted(k for k in before if k.split(":")[0] in stages)
    assert rewritten == expected, f"rewritten {rewritten}, expected {expected}"
    for k in expected:
        assert after[k] > before[k], k


def model_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        e = f["estimates"]
        return {k: e[k][()] for k in ("A/data", "A/indices", "A/indptr", "A/shape", "C", "S",
                                      "YrA", "idx_components")}


def src_fingerprint() -> str:
    """Hash of the engine and workflow sources the runs use (the work tree may be edited)."""
    import cellextract
    from cellextract.cli import repo_root

    h = hashlib.sha1()
    for p in (Path(cellextract.__file__).parent, repo_root() / "workflow",
              repo_root() / "Snakefile"):
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".smk", "") and "__pycache__" not in f.parts:
                h.update(str(f).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def assert_complete_and_readable(series: Path) -> None:
    """Every final output exists and opens with its reader."""
    import isx

    from cellextract.export.caiman_hdf5 import load_estimates

    for rel in FINAL:
        assert (series / rel).is_file() and (series / rel).stat().st_size > 0, rel
    est, _, _ = load_estimates(series / "caiman_output.hdf5")
    assert est.n_components >= 1 and est.C.shape == (est.n_components, 200)
    assert np.isfinite(est.C).all()
    fit, _, _ = load_estimates(series / "cnmf" / "fit.hdf5")
    assert fit.n_components == est.n_components
    with np.load(series / "cnmf" / "summary_images.npz") as z:
        assert z["correlation"].shape == (48, 48)
    cs = isx.CellSet.read(str(series / "cellset_raw.000.isxd"))
    assert cs.num_cells == est.n_components and cs.timing.num_samples == 200
    isx.EventSet.read(str(series / "neural_events.000.isxd"))
    json.loads((series / "output_metadata.json").read_text())
    json.loads((series / "params.json").read_text())
    for png in (series / "previews").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    leftovers = [p for p in series.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial")]
    assert not leftovers, leftovers


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny_movie(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "m.tif"
    run_cli("simulate", *TINY, "--seed", "3", "--out", out)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_movie) -> dict:
    """A complete run; the rerun chain below changes it step by step."""
    out = tmp_path_factory.mktemp("base")
    fp = src_fingerprint()
    run(tiny_movie, out)
    series = out / NAME
    return {"out": out, "series": series, "model": model_arrays(series / "caiman_output.hdf5"),
            "fingerprint": fp}


# ----------------------------------------------------------------------------- reruns

def test_quality_change_reruns_evaluate_onward_only(base, tiny_movie):
    out, series = base["out"], base["series"]
    plan = planned_jobs(run(tiny_movie, out, *QUALITY, "--dry-run"))
    assert set(plan) == DOWNSTREAM_OF_EVALUATE | {"resolve_params", "all"}, plan

    table = summary(run(tiny_movie, out, *QUALITY, "--", "--summary"))
    pending = {row["rule"] for row in table.values() if row["plan"] == "update pending"}
    assert pending == DOWNSTREAM_OF_EVALUATE | {"resolve_params"}, table
    for path in ("m/cnmf/fit.hdf5", "m/cnmf/summary_images.npz", "m/motion", "m/series.json"):
        assert table[path]["plan"] == "no update", table[path]
    assert table["m/caiman_output.hdf5"]["status"] == "params changed"

    before = mtimes(series)
    proc = run(tiny_movie, out, *QUALITY)
    for rule in ("motion_correct", "cnmf_fit", "concatenate"):
        assert f"rule {rule}:" not in output(proc)
    assert_reran(before, mtimes(series), DOWNSTREAM_OF_EVALUATE | {"resolve_params"})
    with h5py.File(series / "caiman_output.hdf5", "r") as f:
        assert f["params/quality/min_SNR"][()] == 5.0
    assert json.loads((series / "params.json").read_text())["params"]["quality"]["min_SNR"] == 5


def test_cnmf_change_reruns_cnmf_onward_not_motion(base, tiny_movie):
    out = base["out"]
    plan = planned_jobs(run(tiny_movie, out, *CNMF, "--dry-run"))
    assert set(plan) == DOWNSTREAM_OF_EVALUATE | {"cnmf_fit", "resolve_params", "all"}, plan
    table = summary(run(tiny_movie, out, *CNMF, "--", "--summary"))
    pending = {row["rule"] for row in table.values() if row["plan"] == "update pending"}
    assert pending == DOWNSTREAM_OF_EVALUATE | {"cnmf_fit", "resolve_params"}, table
    assert table["m/cnmf/fit.hdf5"]["status"] == "params changed"
    assert table["m/motion"]["plan"] == "no update"


def test_motion_change_reruns_motion_onward(base, tiny_movie):
    out = base["out"]
    plan = planned_jobs(run(tiny_movie, out, *MOTION, "--dry-run"))
    assert set(plan) == DOWNSTREAM_OF_EVALUATE | {"motion_correct", "motion_summary", "cnmf_fit",
                                                  "resolve_params", "all"}, plan
    assert "concatenate" not in plan


def test_same_command_twice_does_nothing_and_forcerun_reruns_evaluate_onward(base, tiny_movie):
    out, series = base["out"], base["series"]
    if planned_jobs(run(tiny_movie, out, *QUALITY, "--dry-run")):  # test run on its own
        run(tiny_movie, out, *QUALITY)
        assert planned_jobs(run(tiny_movie, out, *QUALITY, "--dry-run")) == Counter()

    plan = planned_jobs(run(tiny_movie, out, *QUALITY, "--forcerun", "evaluate", "--dry-run"))
    assert set(plan) == DOWNSTREAM_OF_EVALUATE | {"all"}, plan
    before = mtimes(series)
    run(tiny_movie, out, *QUALITY, "--forcerun", "evaluate")
    assert_reran(before, mtimes(series), DOWNSTREAM_OF_EVALUATE)


def test_event_threshold_change_reruns_exports_and_previews(base, tiny_movie):
    plan = planned_jobs(run(tiny_movie, base["out"], *QUALITY, "--set", "event_threshold=0.5",
                            "--dry-run"))
    assert set(plan) == {"export_cellsets", "previews", "resolve_params", "all"}, plan


def test_model_records_the_runs_motion_parameters(base):
    for rel in ("cnmf/fit.hdf5", "caiman_output.hdf5"):
        with h5py.File(base["series"] / rel, "r") as f:
            assert list(f["params/motion/max_shifts"][()]) == [4, 4], rel


# ----------------------------------------------------------------------------- single stages

def test_until_motion_correct_stops_after_motion(tmp_path, tiny_movie):
    out = tmp_path / "until"
    plan = planned_jobs(run(tiny_movie, out, "--until", "motion_correct", "--dry-run"))
    assert set(plan) == {"concatenate", "motion_correct"}, plan
    run(tiny_movie, out, "--until", "motion_correct")
    series = out / NAME
    mm = list((series / "motion").glob(f"{NAME}_d1_48_d2_48_d3_1_order_C_frames_200.mmap"))
    assert len(mm) == 1 and mm[0].stat().st_size == 48 * 48 * 200 * 4
    assert (series / "motion" / "shifts.csv").is_file()
    assert not (series / "cnmf" / "fit.hdf5").exists()
    assert not (series / "caiman_output.hdf5").exists()


def test_a_single_output_file_can_be_requested(tmp_path, tiny_movie):
    proc = run(tiny_movie, tmp_path / "target", "--dry-run", "--", f"{NAME}/cnmf/fit.hdf5",
               check=False)
    assert proc.returncode == 0, output(proc)[-2000:]
    assert set(planned_jobs(proc)) == {"concatenate", "motion_correct", "cnmf_fit"}


# ----------------------------------------------------------------------------- kill and resume

def _start(args: list) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([*CLI, *map(str, args)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _live_in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are not zombies."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> bool:
    t0 = time.monotonic()
    while _live_in_group(pgid):
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def killed(tmp_path_factory, tiny_movie) -> dict:
    """A run SIGKILLed (with its whole process group) while cnmf_fit computes."""
    out = tmp_path_factory.mktemp("killed")
    series = out / NAME
    log = series / "logs" / "cnmf_fit.log"
    proc = _start(["run", tiny_movie, "--name", NAME, "--out", out, "--cores", "2", *ARGS])
    try:
        t0 = time.monotonic()
        while not (log.is_file() and "cnmf_fit: started" in log.read_text()):
            assert proc.poll() is None, "the run ended before cnmf_fit started"
            assert time.monotonic() - t0 < 300, "cnmf_fit did not start"
            time.sleep(0.05)
        time.sleep(0.5)  # inside the fit (about 5 s on this movie)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _wait_group_gone(proc.pid), "processes of the killed run survive"
    assert "done in" not in log.read_text(), "cnmf_fit finished before the kill"
    assert not (series / "cnmf" / "fit.hdf5").exists()
    return {"out": out, "series": series, "killed_at": time.time_ns(),
            "mmap": resolve(series, MMAP).stat().st_mtime_ns}


def _check_resumed(killed: dict) -> None:
    series = killed["series"]
    assert_complete_and_readable(series)
    # motion was complete before the kill: kept; the killed stage ran again, from scratch.
    assert resolve(series, MMAP).stat().st_mtime_ns == killed["mmap"]
    assert (series / "cnmf" / "fit.hdf5").stat().st_mtime_ns > killed["killed_at"]
    assert (series / "logs" / "cnmf_fit.log").read_text().count("cnmf_fit: done in") == 1


def test_sigkill_mid_stage_resumes_with_the_same_command(killed, tiny_movie):
    proc = run(tiny_movie, killed["out"], check=False)
    assert proc.returncode == 0, output(proc)[-1500:]
    assert "rule cnmf_fit:" in output(proc)
    assert "rule motion_correct:" not in output(proc)
    _check_resumed(killed)


def test_sigkill_mid_stage_resumes_after_unlock(killed, tiny_movie):
    """Same, with the documented Snakemake workaround for the stale lock (``--unlock``)."""
    run(tiny_movie, killed["out"], "--", "--unlock")
    proc = run(tiny_movie, killed["out"])
    assert "rule motion_correct:" not in output(proc)
    _check_resumed(killed)


# ----------------------------------------------------------------------------- reproducibility, temporary memmap

@pytest.fixture(scope="module")
def temp_run(tmp_path_factory, tiny_movie) -> Path:
    """A second complete run of the same movie and parameters, with ``--temp-memmap``."""
    out = tmp_path_factory.mktemp("temp")
    run(tiny_movie, out, "--temp-memmap")
    return out


def test_same_inputs_give_the_same_cells_and_traces(base, temp_run):
    """Two runs into different folders (``--temp-memmap`` changes no result parameter)."""
    if src_fingerprint() != base["fingerprint"]:
        pytest.skip("the engine's sources changed between the two runs (shared work tree)")
    # The base folder has been rerun with other parameters since: compare its first model.
    a, b = base["model"], model_arrays(temp_run / NAME / "caiman_output.hdf5")
    for key in ("A/indices", "A/indptr", "A/shape", "idx_components"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for key in ("A/data", "C", "S", "YrA"):
        assert a[key].shape == b[key].shape, key
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    exact = all(np.array_equal(a[k], b[k]) for k in a)
    print(f"determinism: bit-identical={exact}")


def test_temp_memmap_is_removed_at_the_end(temp_run, tiny_movie):
    series = temp_run / NAME
    assert not list(series.rglob("*.mmap"))
    for rel in FINAL:
        assert (series / rel).is_file(), rel
    # the finished run stays finished: the removed memmap does not trigger any rerun
    assert planned_jobs(run(tiny_movie, temp_run, "--temp-memmap", "--dry-run")) == Counter()


def test_temp_memmap_keeps_the_motion_shifts(temp_run):
    motion = temp_run / NAME / "motion_summary"  # motion/ (with the memmap) is temporary
    for rel in ("shifts.csv", "motion.json", "template.npy"):
        assert (motion / rel).is_file(), rel
