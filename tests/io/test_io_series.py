"""Tests for series validation, time ordering, concatenated reading and JSON round trip."""

from pathlib import Path

import numpy as np
import pytest

from cellextract.io import SeriesInfo, load_series, open_series, write_isxd, write_tiff

_SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                             Path("/work/shared")) if p.is_dir()), Path("/work/shared"))


D = str(_SHARED / "data/inscopix") + "/"


def _parts(seed=0, sizes=(5, 7, 4), H=6, W=8):
    rng = np.random.default_rng(seed)
    return [rng.normal(50, 5, size=(n, H, W)).astype(np.float32) for n in sizes]


def test_isxd_parts_concatenated_in_time_order_outputs_in_user_order(tmp_path):
    a, b, c = _parts()
    # user order: late, early, middle
    write_isxd(tmp_path / "late.isxd", a, fr=10.0, start_time=100.0)
    write_isxd(tmp_path / "early.isxd", b, fr=10.0, start_time=10.0)
    write_isxd(tmp_path / "mid.isxd", c, fr=10.0, start_time=50.0)
    files = [tmp_path / "late.isxd", tmp_path / "early.isxd", tmp_path / "mid.isxd"]
    info = load_series(files)
    assert info.files == [str(f) for f in files]
    assert info.time_order == [1, 2, 0]
    assert info.files_time_order == [str(files[1]), str(files[2]), str(files[0])]
    assert info.n_frames == [5, 7, 4] and info.total_frames == 16
    assert info.frame_ranges == [[11, 16], [0, 7], [7, 11]]
    assert info.offsets == [11, 0, 7]
    assert info.start_times == [pytest.approx(100.0), pytest.approx(10.0), pytest.approx(50.0)]
    assert info.fr == pytest.approx(10.0) and info.dims == [6, 8] and info.dtype == "float32"
    movie = np.concatenate([b, c, a])
    with open_series(info) as s:
        assert s.n_frames == 16 and s.dims == (6, 8) and s.shape == (16, 6, 8)
        np.testing.assert_array_equal(s.read(), movie)
        np.testing.assert_array_equal(s.read(5, 13), movie[5:13])  # spans three files
        for chunk in (1, 3, 7, 50):
            got = list(s.iter_chunks(chunk))
            assert [t for t, _ in got] == list(range(0, 16, chunk))
            np.testing.assert_array_equal(np.concatenate([f for _, f in got]), movie)
        assert s.locate(0) == (1, 0) and s.locate(7) == (2, 0) and s.locate(15) == (0, 4)


def test_invalid_frames_mapped_to_global_indices(tmp_path):
    a, b, _ = _parts()
    write_isxd(tmp_path / "p1.isxd", a, fr=20.0, start_time=0.0, dropped=[1])
    write_isxd(tmp_path / "p2.isxd", b, fr=20.0, start_time=5.0, cropped=[(2, 3)])
    info = load_series([tmp_path / "p2.isxd", tmp_path / "p1.isxd"])
    assert info.invalid == [1, 7, 8]
    table = info.file_table()
    assert [r["path"] for r in table] == [str(tmp_path / "p2.isxd"), str(tmp_path / "p1.isxd")]
    assert [r["time_rank"] for r in table] == [1, 0]
    assert [(r["start_frame"], r["stop_frame"]) for r in table] == [(5, 12), (0, 5)]
    assert [r["invalid"] for r in table] == [[2, 3], [1]]
    assert table[0]["metadata"]["cropped"] == [[2, 3]] and table[1]["fr"] == pytest.approx(20.0)
    with open_series(info) as s:
        m = s.read()
        assert np.isnan(m[[1, 7, 8]]).all() and not np.isnan(np.delete(m, [1, 7, 8], 0)).any()
        assert np.flatnonzero(s.invalid).tolist() == [1, 7, 8]


def test_tiff_series_keeps_user_order_and_json_round_trip(tmp_path):
    a, b, _ = _parts(seed=1)
    write_tiff(tmp_path / "x.tif", a, fr=30.0)
    write_tiff(tmp_path / "y.tif", b, fr=30.0)
    info = load_series([tmp_path / "y.tif", tmp_path / "x.tif"])
    assert info.time_order == [0, 1] and info.frame_ranges == [[0, 7], [7, 12]]
    assert info.start_times == [None, None] and info.formats == ["tiff", "tiff"]
    info.to_json(tmp_path / "series.json")
    back = SeriesInfo.from_json(tmp_path / "series.json")
    assert back == info
    with open_series(tmp_path / "series.json") as s:
        np.testing.assert_array_equal(s.read(), np.concatenate([b, a]))


def test_single_path_series_and_real_isxd_metadata_kept():
    info = load_series(D + "movie_part2_108x123x63.isxd")
    assert info.total_frames == 63 and info.fr == pytest.approx(10.0)
    assert info.metadata[0]["extraProperties"]["idps"]["spatialDownsampling"] == 1


def test_real_avi_series():
    info = load_series([D + "movie_part1_108x122x200.avi", D + "movie_part2_108x122x126.avi"])
    assert info.frame_ranges == [[0, 100], [100, 163]] and info.fr == pytest.approx(20.0)
    with open_series(info) as s:
        np.testing.assert_array_equal(s.read(98, 102)[2:], s.read(100, 102))


def test_mixed_int_widths_same_class_allowed(tmp_path):
    a, b, _ = _parts(seed=2)
    write_tiff(tmp_path / "u8.tif", a.clip(0, 255).astype(np.uint8), fr=5.0)
    write_tiff(tmp_path / "u16.tif", b.astype(np.uint16), fr=5.0)
    info = load_series([tmp_path / "u8.tif", tmp_path / "u16.tif"])
    assert info.dtype == "uint8" and info.total_frames == 12


def test_frame_rate_within_tolerance_is_same(tmp_path):
    a, b, _ = _parts(seed=3)
    write_tiff(tmp_path / "a.tif", a, fr=10.0)
    write_tiff(tmp_path / "b.tif", b, fr=1.0 / (0.1 + 5e-7))
    assert load_series([tmp_path / "a.tif", tmp_path / "b.tif"]).fr == pytest.approx(10.0)
