"""Tests for the isxd and avi/mp4 readers and writers, on real and synthetic files."""

import json
from pathlib import Path

import numpy as np
import pytest

from cellextract.io import open_movie, write_avi, write_isxd, write_tiff
from cellextract.io.writers import avi_codec

_SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                             Path("/work/shared")) if p.is_dir()), Path("/work/shared"))


D = str(_SHARED / "data/inscopix") + "/"


def _movie(T=12, H=7, W=9, seed=2):
    return np.random.default_rng(seed).uniform(0, 100, size=(T, H, W)).astype(np.float32)


def _chunks_equal_full(reader, chunk):
    full = reader.read()
    parts = list(reader.iter_chunks(chunk))
    assert [s for s, _ in parts] == list(range(0, reader.n_frames, chunk))
    np.testing.assert_array_equal(np.concatenate([f for _, f in parts]), full)
    return full


def test_real_isxd_equals_tiff_and_has_metadata():
    with open_movie(D + "movie_part2_108x123x63.isxd") as m, \
            open_movie(D + "movie_part2_108x123x63.tiff") as t:
        assert m.n_frames == 63 and m.dims == (123, 108) and m.dtype == np.float32
        assert m.fr == pytest.approx(10.0) and m.start_time == pytest.approx(30.1)
        assert not m.invalid.any()
        assert m.metadata["extraProperties"] == {"idps": {"spatialDownsampling": 1,
                                                          "temporalDownsampling": 1}}
        assert m.metadata["spacingInfo"]["numPixels"] == {"x": 108, "y": 123}
        json.dumps(m.metadata)  # exports copy it as JSON
        full = _chunks_equal_full(m, 10)
        np.testing.assert_array_equal(full, t.read())
        np.testing.assert_array_equal(m.read(20, 25), t.read(20, 25))


def test_real_isxd_part3():
    with open_movie(D + "movie_part3.isxd") as m:
        assert (m.n_frames, m.dims, m.fr) == (34, (128, 128), pytest.approx(10.0))
        assert m.start_time == pytest.approx(62.3) and m.metadata["extraProperties"] is None


def test_isxd_round_trip_with_dropped_and_cropped_frames_as_nan(tmp_path):
    mov = _movie()
    write_isxd(tmp_path / "d.isxd", mov, fr=20.0, start_time=12.5, dropped=[3], cropped=[(6, 7)])
    with open_movie(tmp_path / "d.isxd") as m:
        assert m.n_frames == 12 and m.fr == pytest.approx(20.0) and m.start_time == pytest.approx(12.5)
        assert np.flatnonzero(m.invalid).tolist() == [3, 6, 7]
        assert m.metadata["dropped"] == [3] and m.metadata["cropped"] == [[6, 7]]
        full = _chunks_equal_full(m, 5)
        assert np.isnan(full[[3, 6, 7]]).all()
        ok = ~m.invalid
        np.testing.assert_array_equal(full[ok], mov[ok])


def test_isxd_uint16_from_iterable(tmp_path):
    mov = np.rint(_movie(T=6) * 10)
    write_isxd(tmp_path / "u.isxd", (mov[i:i + 4] for i in (0, 4)), fr=10.0, n_frames=6,
               dtype=np.uint16)
    with open_movie(tmp_path / "u.isxd") as m:
        assert m.dtype == np.uint16
        np.testing.assert_array_equal(m.read(), mov)


def test_real_avi_frames_and_fps():
    with open_movie(D + "movie_part2_108x122x126.avi") as v:
        assert v.dims == (122, 108) and v.fr == pytest.approx(20.0)
        assert v.n_frames == 63  # the header claims 126; only 63 frames decode
        assert v.metadata["effective_fr"] == pytest.approx(10.0)
        full = _chunks_equal_full(v, 8)
        # random access after sequential reads is frame exact (FMP4 seeks are not)
        np.testing.assert_array_equal(v.read(40, 45), full[40:45])
        np.testing.assert_array_equal(v.read(2, 4), full[2:4])
        assert full.std() > 0


def test_real_avi_matches_isxd_roughly():
    with open_movie(D + "movie_part2_108x122x126.avi") as v, \
            open_movie(D + "movie_part2_108x123x63.isxd") as m:
        a, b = v.read(), m.read()[:, :122]
        r = np.corrcoef(a.mean(axis=0).ravel(), b.mean(axis=0).ravel())[0, 1]
        assert r > 0.9  # the same scene (lossy 8-bit, one row cropped)


def test_avi_lossless_round_trip_and_scaling(tmp_path):
    assert avi_codec() == "FFV1"
    mov8 = np.random.default_rng(3).integers(0, 256, size=(9, 10, 12)).astype(np.uint8)
    write_avi(tmp_path / "a.avi", mov8, fr=25.0)
    with open_movie(tmp_path / "a.avi") as v:
        assert v.fr == pytest.approx(25.0) and v.n_frames == 9 and v.dims == (10, 12)
        np.testing.assert_array_equal(v.read(), mov8.astype(np.float32))
    mov = _movie(T=5, H=8, W=10)
    write_avi(tmp_path / "s.avi", mov, fr=10.0)
    with open_movie(tmp_path / "s.avi") as v:
        expect = np.rint((mov - mov.min()) * 255 / (mov.max() - mov.min()))
        np.testing.assert_array_equal(v.read(), expect)


def test_avi_odd_size_padded_only_on_request(tmp_path):
    mov8 = np.random.default_rng(5).integers(0, 256, size=(3, 7, 9)).astype(np.uint8)
    with pytest.raises(ValueError, match="even height and width"):
        write_avi(tmp_path / "o.avi", mov8, fr=10.0)
    write_avi(tmp_path / "o.avi", mov8, fr=10.0, pad_odd=True)
    with open_movie(tmp_path / "o.avi") as v:
        got = v.read()
    assert got.shape == (3, 8, 10)
    np.testing.assert_array_equal(got[:, :7, :9], mov8)
    np.testing.assert_array_equal(got[:, 7, :9], mov8[:, 6])


def test_avi_from_iterable_needs_range(tmp_path):
    mov = _movie(T=4, H=6, W=8)
    with pytest.raises(ValueError, match="vmin and vmax"):
        write_avi(tmp_path / "x.avi", iter([mov]), fr=10.0)
    assert not (tmp_path / "x.avi").exists()
    write_avi(tmp_path / "x.avi", iter([mov[:2], mov[2:]]), fr=10.0, vmin=0, vmax=100)
    with open_movie(tmp_path / "x.avi") as v:
        np.testing.assert_array_equal(v.read(), np.rint(mov * 2.55))


def test_mp4_colour_to_gray(tmp_path):
    import cv2

    rgb = np.random.default_rng(4).integers(0, 256, size=(4, 16, 16, 3)).astype(np.uint8)
    w = cv2.VideoWriter(str(tmp_path / "c.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (16, 16))
    assert w.isOpened()
    for f in rgb:
        w.write(f)
    w.release()
    with open_movie(tmp_path / "c.mp4") as v:
        assert v.n_frames == 4 and v.dims == (16, 16) and v.fr == pytest.approx(15.0)
        assert v.metadata["color"]
        assert v.read().shape == (4, 16, 16)


def test_writers_leave_no_temp_files(tmp_path):
    mov = _movie(T=3, H=6, W=8)
    write_tiff(tmp_path / "a.tif", mov, fr=5)
    write_isxd(tmp_path / "a.isxd", mov, fr=5)
    write_avi(tmp_path / "a.avi", mov, fr=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi", "a.isxd", "a.tif"]


def test_isxd_readers_opened_and_read_from_many_threads(tmp_path):
    """isx is not thread-safe (two threads opening movies at once crashed the motion stage
    with SIGSEGV); the reader serialises its isx calls. A crash here kills the test run."""
    from concurrent.futures import ThreadPoolExecutor

    mov = _movie(T=20, H=16, W=16)
    paths = []
    for k in range(3):
        p = tmp_path / f"m{k}.isxd"
        write_isxd(p, mov + k, fr=10.0)
        paths.append(p)

    def job(i):
        with open_movie(paths[i % 3]) as r:
            return float(r.read(0, 20).sum()), r.metadata["acquisitionInfo"] is not None

    with ThreadPoolExecutor(8) as ex:
        res = list(ex.map(job, range(160)))
    sums = [mov.sum(dtype=np.float64) + k * mov.size for k in range(3)]
    for i, (s, _) in enumerate(res):
        assert s == pytest.approx(sums[i % 3], rel=1e-6)
