"""End-to-end: the real Snakemake DAG on small synthetic movies, through `cellextract run`."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from wfhelpers import FAST, run_cli

pytestmark = pytest.mark.slow


def test_all_outputs_of_the_contract_exist(small_run):
    s = small_run
    for rel in ["series.json", "params.json", "cnmf/fit.hdf5", "cnmf/summary_images.npz",
                "caiman_output.hdf5", "cellset_raw.000.isxd", "cellset_denoised.000.isxd",
                "neural_events.000.isxd", "output_metadata.json", "motion/shifts.csv",
                "previews/init_images.png", "previews/neural_events.000.png",
                "previews/cellset_raw.000.png", "previews/cellset_denoised.series.png",
                "previews/motion.png"]:
        assert (s / rel).is_file(), rel
    mm = list((s / "motion").glob("small_d1_64_d2_64_d3_1_order_C_frames_300.mmap"))
    assert len(mm) == 1


def test_params_json_records_sources(small_run):
    doc = json.loads((small_run / "params.json").read_text())
    assert doc["params"]["init"]["min_pnr"] == 6
    assert doc["sources"]["init.min_pnr"] == "table"
    assert doc["params"]["data"]["fr"] == 10.0  # from the tif's ImageJ metadata


def test_model_has_cells_and_evaluation(small_run):
    with h5py.File(small_run / "caiman_output.hdf5", "r") as f:
        K = f["estimates/A/shape"][()][1]
        assert K >= 4
        acc = f["estimates/idx_components"][()]
        assert len(acc) >= 4
        assert f["estimates/C"].shape == (K, 300)


def test_cellsets_read_back_with_isx(small_run):
    import isx

    cs = isx.CellSet.read(str(small_run / "cellset_raw.000.isxd"))
    assert cs.num_cells >= 4
    assert cs.timing.num_samples == 300
    trace = cs.get_cell_trace_data(0)
    assert np.isfinite(trace).all()


def test_html_report_has_previews_parameters_and_counts(small_run, small_movie):
    out = small_run.parent
    report = out / "report.html"
    run_cli("run", small_movie, "--name", "small", "--out", out, "--cores", "2", *FAST,
            "--report", report)
    html = report.read_text(errors="replace")
    for name in ("params.json", "output_metadata.json", "init_images.png", "motion.png",
                 "cellset_raw.000.png", "neural_events.series.png"):
        assert name in html, name


def test_nwb_export_validates(small_run, small_movie):
    out = small_run.parent
    proc = run_cli("run", small_movie, "--name", "small", "--out", out, "--cores", "2", *FAST,
                   "--export-nwb")
    import re

    jobs = re.findall(r"^\s*(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M)
    assert set(jobs) <= {"export_nwb", "resolve_params", "all"}, jobs  # no recomputation
    nwb = small_run / "cells.nwb"
    assert nwb.is_file()
    from nwbinspector import Importance, inspect_nwbfile

    bad = [m for m in inspect_nwbfile(nwbfile_path=str(nwb))
           if m.importance in (Importance.CRITICAL, Importance.ERROR)]
    assert not bad, bad


def test_bad_input_fails_cleanly(tmp_path):
    missing = tmp_path / "nope.tif"
    proc = run_cli("run", missing, "--out", tmp_path / "out", check=False)
    assert proc.returncode != 0
    assert "nope.tif" in proc.stderr
    assert not (tmp_path / "out" / "nope").exists()


def test_bad_parameter_fails_cleanly(tmp_path, small_movie):
    proc = run_cli("run", small_movie, "--out", tmp_path / "out", "--set", "max_shifts=-1",
                   check=False)
    assert proc.returncode != 0
    assert "max_shifts" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.hdf5"))


def test_quality_change_reruns_only_evaluation_onwards(tmp_path, small_movie):
    out = tmp_path / "run"
    run_cli("run", small_movie, "--name", "m", "--out", out, "--cores", "2", *FAST)
    plan = run_cli("run", small_movie, "--name", "m", "--out", out, "--cores", "2", *FAST,
                   "--set", "min_SNR=5", "--dry-run").stdout
    assert "evaluate" in plan
    for stage in ("motion_correct", "cnmf_fit", "concatenate"):
        assert f"rule {stage}:" not in plan, plan


def test_three_file_isxd_series(tmp_path):
    movie = tmp_path / "ser.isxd"
    proc = run_cli("simulate", "--kind", "1p", "--dims", "48", "48", "--frames", "240",
                   "--neurons", "6", "--seed", "5", "--parts", "3", "--out", movie)
    parts = proc.stdout.split()
    assert len(parts) == 3
    out = tmp_path / "run"
    run_cli("run", *reversed(parts), "--name", "ser", "--out", out, "--cores", "2", *FAST)
    import isx

    s = out / "ser"
    info = json.loads((s / "series.json").read_text())
    assert info["time_order"] == [2, 1, 0]  # isxd parts concatenated by start time
    for k, part in enumerate(reversed(parts)):  # outputs follow the user's order
        mv = isx.Movie.read(part)
        for name in ("cellset_raw", "cellset_denoised"):
            cs = isx.CellSet.read(str(s / f"{name}.{k:03d}.isxd"))
            assert cs.timing.num_samples == mv.timing.num_samples
            assert cs.timing.start == mv.timing.start
        ev = isx.EventSet.read(str(s / f"neural_events.{k:03d}.isxd"))
        assert ev.timing.num_samples == mv.timing.num_samples
    meta = json.loads((s / "output_metadata.json").read_text())
    assert meta


def test_real_inscopix_movie(tmp_path):
    from pathlib import Path

    shared = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                               Path("/work/shared")) if p.is_dir()), Path("/work/shared"))
    movie = shared / "data" / "inscopix" / "movie_part2_108x123x63.isxd"
    out = tmp_path / "real"
    run_cli("run", movie, "--name", "real", "--out", out, "--cores", "2",
            "--set", "min_corr=0.5", "--set", "min_pnr=5")
    s = out / "real"
    doc = json.loads((s / "params.json").read_text())
    assert doc["params"]["data"]["fr"] == 10.0
    with h5py.File(s / "caiman_output.hdf5", "r") as f:
        K = int(f["estimates/A/shape"][()][1])
        n_acc = len(f["estimates/idx_components"][()])
    assert 10 <= K <= 150 and n_acc >= 10  # tens of plausible cells (CaImAn: ~24 of 40)
    import isx

    cs = isx.CellSet.read(str(s / "cellset_raw.000.isxd"))
    mv = isx.Movie.read(str(movie))
    assert cs.num_cells == K
    assert cs.timing.num_samples == mv.timing.num_samples
    assert cs.timing.period == mv.timing.period
    assert cs.spacing.num_pixels == mv.spacing.num_pixels


def test_2p_preset_through_snakemake(tmp_path):
    movie = tmp_path / "m2p.tif"
    run_cli("simulate", "--kind", "2p", "--dims", "64", "64", "--frames", "300", "--neurons",
            "10", "--seed", "7", "--out", movie)
    out = tmp_path / "run2p"
    run_cli("run", movie, "--name", "m2p", "--out", out, "--cores", "2", "--preset", "2p",
            "--set", "K=6", "--set", "rf=16", "--set", "stride=6", "--set", "gSig=3")
    s = out / "m2p"
    doc = json.loads((s / "params.json").read_text())
    assert doc["params"]["init"]["method_init"] == "greedy_roi"
    assert doc["params"]["data"]["fr"] == 30.0
    with h5py.File(s / "caiman_output.hdf5", "r") as f:
        est = f["estimates"]
        K = int(est["A/shape"][()][1])
        assert K >= 5
        assert est["b"].shape[1] == doc["params"]["init"]["nb"]  # low-rank background
        assert est["f"].shape == (doc["params"]["init"]["nb"], 300)
    from cellextract.simulate import load_truth, score
    from cellextract.export.caiman_hdf5 import load_estimates

    model, _, _ = load_estimates(s / "caiman_output.hdf5")
    model = model.select(model.idx_components)  # K per patch over-seeds; evaluation prunes
    res = score(model.A, model.dims, load_truth(tmp_path / "m2p_truth.h5"), C_found=model.C)
    assert res["precision"] >= 0.8 and res["F1"] >= 0.5, res


def test_greedy_roi_without_k_is_a_clear_error(tmp_path, small_movie):
    proc = run_cli("run", small_movie, "--out", tmp_path / "o", "--preset", "2p",
                   "--set", "K=auto", check=False)
    assert proc.returncode == 1
    assert "K" in proc.stderr and "greedy_roi" in proc.stderr
