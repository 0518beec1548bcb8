"""output_metadata.json: counts and per-file timing summary."""

import json

import numpy as np

from cellextract.export.metadata import write_output_metadata


def test_counts_and_files(tmp_path, make_estimates):
    est = make_estimates(K=5, T=30)
    inv = np.zeros(10, bool)
    inv[2] = True
    files = [
        {"path": "/d/a.isxd", "start_frame": 0, "n_frames": 20, "period_s": 0.1,
         "start_time_s": 30.1, "invalid_mask": None, "is_isxd": True},
        {"path": "/d/b.tif", "start_frame": 20, "n_frames": 10, "period_s": 0.05,
         "start_time_s": None, "invalid_mask": inv, "is_isxd": False},
    ]
    path = tmp_path / "output_metadata.json"
    write_output_metadata(path, est, files, extra={"software": "cellextract"})
    meta = json.loads(path.read_text())
    assert meta["counts"] == {"accepted": 3, "rejected": 2, "undecided": 0, "total": 5}
    f0, f1 = meta["files"]
    assert f0["frame_rate_hz"] == 10.0 and f0["duration_s"] == 2.0 and f0["start_time_s"] == 30.1
    assert f1["format"] == "tif" and f1["n_invalid_frames"] == 1
    assert f1["first_frame_in_series"] == 20
    expect_ev = int((est.S[:, 20:30][:, ~inv] > 0).sum())
    assert f1["n_events"] == expect_ev
    assert meta["outputs"]["neural_events.001"]["n_events"] == expect_ev
    assert meta["outputs"]["cellset_raw.000"]["num_accepted_cells"] == 3
    assert meta["software"] == "cellextract"


def test_unevaluated_model_counts_undecided(tmp_path, make_estimates):
    est = make_estimates(K=2, T=5, evaluated=False)
    files = [{"path": "a.avi", "start_frame": 0, "n_frames": 5, "period_s": 0.05,
              "start_time_s": None, "invalid_mask": None, "is_isxd": False}]
    meta = write_output_metadata(tmp_path / "m.json", est, files)
    assert meta["counts"] == {"accepted": 0, "rejected": 0, "undecided": 2, "total": 2}
