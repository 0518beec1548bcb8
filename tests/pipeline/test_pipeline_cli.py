"""The command-line interface: parameters, simulation, early validation of `run`."""

import json
from pathlib import Path

import pytest

from cellextract.cli import main

_SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                             Path("/work/shared")) if p.is_dir()), Path("/work/shared"))



def test_params_prints_values_and_sources(capsys):
    assert main(["params", "--set", "gSig=4", "--fr", "20"]) == 0
    out = capsys.readouterr().out
    assert "gSig" in out and "table" in out and "[9, 9]" in out  # gSiz derived, odd


def test_params_json_with_file(tmp_path, capsys):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"init": {"min_pnr": 7}}))
    assert main(["params", "--params-file", str(f), "--overwrite-params", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"]["init"]["min_pnr"] == 7
    assert doc["sources"]["init.min_pnr"].startswith("file:")


def test_params_2p_preset(capsys):
    assert main(["params", "--preset", "2p", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"]["init"]["method_init"] == "greedy_roi"
    assert doc["params"]["init"]["nb"] == 2


@pytest.mark.parametrize("args, needle", [
    (["params", "--set", "gSgi=4"], "gSgi"),
    (["params", "--set", "merge_thr=2"], "merge_thr"),
    (["params", "--set", "method_init=foo"], "method_init"),
    (["params", "--preset", "2p", "--set", "K=auto"], "K"),
])
def test_bad_parameters_are_one_line_errors(args, needle, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and needle in err[-1]


def test_simulate_writes_movie_and_truth(tmp_path, capsys):
    out = tmp_path / "m.tif"
    assert main(["simulate", "--dims", "32", "40", "--frames", "30", "--neurons", "3",
                 "--out", str(out)]) == 0
    assert out.is_file() and (tmp_path / "m_truth.h5").is_file()


@pytest.mark.parametrize("name, content", [
    ("missing.tif", None),
    ("notes.txt", b"hello"),
    ("garbage.tif", b"\x00\x01not a tiff"),
])
def test_run_rejects_bad_movies_before_starting(tmp_path, capsys, name, content):
    movie = tmp_path / name
    if content is not None:
        movie.write_bytes(content)
    rc = main(["run", str(movie), "--out", str(tmp_path / "out")])
    assert rc == 1
    assert name in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_rejects_mismatched_real_series(tmp_path, capsys):
    d = _SHARED / "data" / "inscopix"
    rc = main(["run", f"{d}/movie_part2_108x123x63.isxd", f"{d}/movie_part3.isxd",
               "--out", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "movie_part3.isxd" in err
    assert not (tmp_path / "out").exists()


def test_dry_run_plans_every_stage(tmp_path, capsys):
    movie = tmp_path / "m.tif"
    main(["simulate", "--dims", "32", "32", "--frames", "30", "--neurons", "2", "--out",
          str(movie)])
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "cellextract.cli", "run", str(movie), "--out",
                           str(tmp_path / "out"), "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for rule in ("concatenate", "motion_correct", "cnmf_fit", "evaluate", "export_cellsets",
                 "previews", "output_metadata", "resolve_params"):
        assert rule in proc.stdout
