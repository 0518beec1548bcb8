"""Frame-major scratch -> pixel-major CaImAn memmap, tile by tile."""

import os

import numpy as np

from cellextract.motion import transpose as tr


def test_transpose_with_offset_and_ranges(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    T, P = 37, 3000
    frames = rng.standard_normal((T, P)).astype(np.float32)
    scratch, out = tmp_path / "s.bin", tmp_path / "o.bin"
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT)
    tr.write_frames(fd, frames[:20], 0)
    tr.write_frames(fd, frames[20:], 20)
    os.close(fd)
    with open(out, "wb") as fh:
        fh.truncate(P * T * 4)
    monkeypatch.setattr(tr, "TILE_BYTES", 4 * T * 1100)  # several bands, last one partial
    monkeypatch.setattr(tr, "SUB_ROWS", 300)
    tr.transpose_to_memmap(str(scratch), str(out), P, T, offset=2.5, p_range=(0, 1700))
    tr.transpose_to_memmap(str(scratch), str(out), P, T, offset=2.5, p_range=(1700, P))
    Yr = np.fromfile(out, dtype=np.float32).reshape(P, T)
    np.testing.assert_array_equal(Yr, frames.T + np.float32(2.5))
