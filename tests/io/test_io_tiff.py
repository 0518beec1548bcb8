"""Tests for the TIFF reader and writer."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellextract.io.tiff import TiffReader
from cellextract.io.writers import write_tiff

_SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                             Path("/work/shared")) if p.is_dir()), Path("/work/shared"))


REAL_TIFF = str(_SHARED / "data/inscopix/movie_part2_108x123x63.tiff")


def _movie(T=11, H=6, W=9, seed=1):
    return np.random.default_rng(seed).normal(10, 3, size=(T, H, W)).astype(np.float32)


def _check_chunked(reader, full):
    for chunk in (1, 4, 100):
        got = [(s, f) for s, f in reader.iter_chunks(chunk)]
        assert [s for s, _ in got] == list(range(0, len(full), chunk))
        np.testing.assert_array_equal(np.concatenate([f for _, f in got]), full)


def test_imagej_round_trip_memmapped(tmp_path):
    mov = _movie()
    write_tiff(tmp_path / "m.tif", mov, fr=12.5)
    with TiffReader(tmp_path / "m.tif") as r:
        assert r.n_frames == 11 and r.dims == (6, 9) and r.dtype == np.float32
        assert r.fr == pytest.approx(12.5) and r.metadata["imagej"] and r.metadata["memmap"]
        assert r.start_time is None and not r.invalid.any()
        full = r.read()
        assert full.dtype == np.float32 and full.flags.writeable
        np.testing.assert_array_equal(full, mov)
        np.testing.assert_array_equal(r.read(3, 8), mov[3:8])
        _check_chunked(r, mov)


def test_streamed_iterable_unknown_length_is_bigtiff_with_fps(tmp_path):
    mov = _movie(T=10)
    write_tiff(tmp_path / "s.tiff", (mov[i:i + 3] for i in range(0, 10, 3)), fr=7.0)
    with TiffReader(tmp_path / "s.tiff") as r:
        assert r.metadata["bigtiff"] and r.fr == pytest.approx(7.0)
        np.testing.assert_array_equal(r.read(), mov)


def test_forced_bigtiff_uint16_no_fr(tmp_path):
    mov = (_movie() * 100).astype(np.uint16)
    write_tiff(tmp_path / "u.tif", list(mov), fr=None, n_frames=11, bigtiff=True)
    with TiffReader(tmp_path / "u.tif") as r:
        assert r.metadata["bigtiff"] and r.dtype == np.uint16 and r.fr is None
        np.testing.assert_array_equal(r.read(), mov.astype(np.float32))


def test_compressed_tiff_read_page_by_page(tmp_path):
    mov = _movie()
    tifffile.imwrite(tmp_path / "z.tif", mov, compression="zlib")
    with TiffReader(tmp_path / "z.tif") as r:
        assert not r.metadata["memmap"]
        _check_chunked(r, mov)


def test_ome_tiff_time_increment(tmp_path):
    mov = _movie(T=5)
    tifffile.imwrite(tmp_path / "o.ome.tif", mov, ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 50.0, "TimeIncrementUnit": "ms"})
    with TiffReader(tmp_path / "o.ome.tif") as r:
        assert r.metadata["ome"] and r.fr == pytest.approx(20.0)
        np.testing.assert_array_equal(r.read(), mov)


def test_imagej_hyperstack_with_singleton_axes(tmp_path):
    mov = _movie(T=4)
    tifffile.imwrite(tmp_path / "h.tif", mov[:, None, None], imagej=True,
                     metadata={"axes": "TZCYX", "finterval": 0.25})
    with TiffReader(tmp_path / "h.tif") as r:
        assert r.n_frames == 4 and r.fr == pytest.approx(4.0)
        np.testing.assert_array_equal(r.read(), mov)


def test_rgb_tiff_to_gray(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, size=(3, 5, 6, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    with TiffReader(tmp_path / "c.tif") as r:
        assert r.dims == (5, 6) and r.n_frames == 3
        expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        np.testing.assert_allclose(r.read(), expected, rtol=1e-6)


def test_real_inscopix_tiff_page_by_page():
    with TiffReader(REAL_TIFF) as r:
        assert r.n_frames == 63 and r.dims == (123, 108) and r.dtype == np.float32
        assert r.fr is None
        full = r.read()
        assert np.isfinite(full).all() and full.std() > 0
        _check_chunked(r, full)


def test_bigtiff_chosen_above_threshold(tmp_path, monkeypatch):
    import cellextract.io.writers as writers

    mov = _movie(T=4)
    monkeypatch.setattr(writers, "_BIGTIFF_BYTES", mov.nbytes - 1)
    write_tiff(tmp_path / "big.tif", mov, fr=10.0)
    monkeypatch.setattr(writers, "_BIGTIFF_BYTES", mov.nbytes)
    write_tiff(tmp_path / "small.tif", mov, fr=10.0)
    with TiffReader(tmp_path / "big.tif") as big, TiffReader(tmp_path / "small.tif") as small:
        assert big.metadata["bigtiff"] and not small.metadata["bigtiff"]
        assert big.fr == pytest.approx(10.0) and big.metadata["imagej"]
        np.testing.assert_array_equal(big.read(), mov)


def test_write_tiff_count_mismatch_leaves_no_file(tmp_path):
    mov = _movie(T=4)
    with pytest.raises(ValueError):
        write_tiff(tmp_path / "n.tif", iter([mov]), fr=10.0, n_frames=6)
    assert list(tmp_path.iterdir()) == []
