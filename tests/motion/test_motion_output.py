"""Memmap row writes: direct I/O for the aligned middle, page cache for the rest, fallbacks."""

import os

import numpy as np
import pytest

from cellextract.motion.buffers import PAGE, aligned_view, populated
from cellextract.motion.output import RowWriter, direct_io_enabled


def _file(path, nbytes):
    with open(path, "wb") as fh:
        fh.truncate(nbytes)
    return path


@pytest.mark.parametrize("offset", [0, 4, PAGE - 8, 3 * PAGE + 100])
def test_direct_and_buffered_parts_land_where_they_belong(tmp_path, offset):
    n = (3 << 20) // 4 + 37  # > MIN_DIRECT, not a whole number of pages
    path = _file(tmp_path / "m.bin", offset + 4 * n + PAGE)
    store = populated(4 * n + PAGE, np.uint8)
    a = aligned_view(store, (n,), offset)
    assert (a.ctypes.data - offset) % PAGE == 0
    a[...] = np.arange(n, dtype=np.float32)
    with RowWriter(path) as w:
        used_direct = w.direct
        w.write(a, offset)
    got = np.fromfile(path, np.uint8)[offset:offset + 4 * n].view(np.float32)
    np.testing.assert_array_equal(got, np.arange(n, dtype=np.float32))
    assert not np.fromfile(path, np.uint8)[:offset].any()
    if hasattr(os, "O_DIRECT") and direct_io_enabled():
        assert used_direct  # ext4 / xfs under /tmp take direct I/O


def test_misaligned_array_and_small_writes_go_through_the_page_cache(tmp_path):
    path = _file(tmp_path / "m.bin", 8 << 20)
    a = np.arange((2 << 20) // 4, dtype=np.float32)[1:]  # address not congruent to the offset
    with RowWriter(path) as w:
        w.write(a, 12)
        w.write(np.ones(10, np.float32), 4 << 20)
    raw = np.fromfile(path, np.float32)
    np.testing.assert_array_equal(raw[3:3 + a.size], a)
    np.testing.assert_array_equal(raw[(4 << 20) // 4:(4 << 20) // 4 + 10], 1.0)


def test_refused_direct_io_falls_back_to_the_page_cache(tmp_path, monkeypatch):
    """A filesystem refusing a direct write (EINVAL) gets the bytes through the page cache."""
    import errno

    from cellextract.motion import output
    n = (2 << 20) // 4
    path = _file(tmp_path / "m.bin", 4 * n + PAGE)
    store = populated(4 * n + PAGE, np.uint8)
    a = aligned_view(store, (n,), 0)
    a[...] = 5.0
    with RowWriter(path, direct=True) as w:
        if not w.direct:
            pytest.skip("no direct I/O here at all")
        real = os.pwrite

        def refuse(fd, buf, off):
            if fd == w.dfd:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(fd, buf, off)
        monkeypatch.setattr(output.os, "pwrite", refuse)
        w.write(a, 0)
        assert not w.direct  # switched off for the rest of the file
        w.write(a[:10], 4 * n)
    monkeypatch.undo()
    raw = np.fromfile(path, np.float32)
    assert (raw[:n] == 5.0).all() and (raw[n:n + 10] == 5.0).all()


def test_direct_io_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLEXTRACT_DIRECT_IO", "0")
    assert not direct_io_enabled()
    monkeypatch.setenv("CELLEXTRACT_DIRECT_IO", "1")
    assert direct_io_enabled()
    with RowWriter(_file(tmp_path / "m.bin", 1 << 20), direct=False) as w:
        assert not w.direct
