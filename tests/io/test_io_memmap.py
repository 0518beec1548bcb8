"""Tests for cellextract.io.memmap (CaImAn layout, naming, chunked atomic writer)."""

import numpy as np
import pytest

from cellextract.errors import InputError
from cellextract.io.memmap import (
    MemmapWriter,
    create_memmap,
    frames_from_memmap,
    memmap_name,
    open_memmap,
    parse_memmap_name,
)


def _movie(T=13, H=5, W=7, seed=0):
    return np.random.default_rng(seed).normal(size=(T, H, W)).astype(np.float32)


def test_name_round_trip(tmp_path):
    name = memmap_name(tmp_path / "sess", (5, 7), 13)
    assert name.endswith("sess_d1_5_d2_7_d3_1_order_C_frames_13.mmap")
    assert parse_memmap_name(name) == ((5, 7), 13)
    # CaImAn's own names carry a trailing underscore
    assert parse_memmap_name("Yr_d1_60_d2_80_d3_1_order_C_frames_500_.mmap") == ((60, 80), 500)


def test_writer_layout_is_fortran_pixel_order(tmp_path):
    mov = _movie()
    path = memmap_name(tmp_path / "m", (5, 7), 13)
    w = MemmapWriter(path, (5, 7), 13)
    for s in range(0, 13, 4):  # chunks of 4 with a short last chunk
        w.write(s, mov[s:s + 4])
    w.finalize()
    Yr, dims, T = open_memmap(path)
    assert Yr.shape == (35, 13) and Yr.dtype == np.float32 and dims == (5, 7) and T == 13
    assert not Yr.flags.writeable
    for t in range(T):
        np.testing.assert_array_equal(Yr[:, t], mov[t].ravel(order="F"))
    np.testing.assert_array_equal(frames_from_memmap(Yr, dims, 3, 9), mov[3:9])
    np.testing.assert_array_equal(frames_from_memmap(Yr, dims), mov)


def test_writer_out_of_order_chunks_and_no_partial_name(tmp_path):
    mov = _movie(T=10)
    path = tmp_path / "x_d1_5_d2_7_d3_1_order_C_frames_10.mmap"
    w = MemmapWriter(path, (5, 7), 10)
    w.write(5, mov[5:])
    assert not path.exists() and w.tmp_path.exists()
    w.write(0, mov[:5])
    w.finalize()
    assert path.exists() and not w.tmp_path.exists()
    Yr, dims, _ = open_memmap(path)
    np.testing.assert_array_equal(frames_from_memmap(Yr, dims), mov)


def test_writer_incomplete_or_failed_leaves_nothing(tmp_path):
    path = tmp_path / "y_d1_5_d2_7_d3_1_order_C_frames_10.mmap"
    with pytest.raises(RuntimeError, match="never written"):
        with MemmapWriter(path, (5, 7), 10) as w:
            w.write(0, _movie(T=4))
    assert not path.exists() and not w.tmp_path.exists()
    with pytest.raises(ZeroDivisionError):
        with MemmapWriter(path, (5, 7), 10) as w:
            w.write(0, _movie(T=4))
            1 / 0
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_chunks(tmp_path):
    w = MemmapWriter(tmp_path / "z_d1_5_d2_7_d3_1_order_C_frames_10.mmap", (5, 7), 10)
    with pytest.raises(ValueError, match="outside"):
        w.write(8, _movie(T=4))
    with pytest.raises(ValueError, match="expected"):
        w.write(0, np.zeros((2, 7, 5), np.float32))
    w.abort()


def test_create_memmap_and_reopen(tmp_path):
    path = memmap_name(tmp_path / "c", (3, 4), 6)
    Yr = create_memmap(path, (3, 4), 6)
    Yr[:] = np.arange(72, dtype=np.float32).reshape(12, 6)
    Yr.flush()
    del Yr
    Yr2, dims, T = open_memmap(path)
    assert Yr2[11, 5] == 71 and dims == (3, 4) and T == 6


def test_open_memmap_errors(tmp_path):
    with pytest.raises(InputError, match="not a CaImAn memmap name"):
        open_memmap(tmp_path / "movie.mmap")
    with pytest.raises(InputError, match="not found"):
        open_memmap(tmp_path / "a_d1_2_d2_2_d3_1_order_C_frames_3.mmap")
    bad = tmp_path / "b_d1_2_d2_2_d3_1_order_C_frames_3.mmap"
    bad.write_bytes(b"\0" * 20)
    with pytest.raises(InputError, match="20 bytes, expected 48"):
        open_memmap(bad)
    with pytest.raises(InputError, match="3-D memmaps"):
        parse_memmap_name("c_d1_2_d2_2_d3_4_order_C_frames_3.mmap")
