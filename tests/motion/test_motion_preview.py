"""Motion preview PNG from a motion output folder."""

import numpy as np
from scipy import ndimage

from cellextract.motion.run import motion_correct
from cellextract.previews.motion import plot_motion, plot_motion_dir


def test_plot_motion_dir_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    big = ndimage.gaussian_filter(rng.standard_normal((60, 60)), 1.5) * 100 + 200
    mov = np.stack([ndimage.shift(big, rng.uniform(-2, 2, 2), order=1)[5:55, 5:55] for _ in range(20)])
    motion_correct(mov.astype(np.float32), tmp_path / "m", "p", pw_rigid=True, strides=(20, 20),
                   overlaps=(12, 12), max_shifts=(3, 3), max_deviation_rigid=2)
    png = plot_motion_dir(tmp_path / "m", tmp_path / "motion.png", fr=10.0)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_motion_handles_nan_correlations(tmp_path):
    T = 30
    png = plot_motion(tmp_path / "x.png", shifts=np.zeros((T, 2)), mean_before=np.ones((8, 9)),
                      mean_after=np.full((8, 9), np.nan), corr_before=np.full(T, np.nan),
                      corr_after=np.linspace(0, 1, T), fr=None)
    assert png.stat().st_size > 10_000
