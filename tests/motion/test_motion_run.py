"""motion_correct end to end: memmap layout, outputs, modes, parallel workers, real isxd."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cellextract.io.memmap import frames_from_memmap, open_memmap
from cellextract.motion.run import load_motion_summary, motion_correct

ISXD = Path("/work/shared/data/inscopix/movie_part2_108x123x63.isxd")


def _movie(T=60, H=48, W=56, seed=0, max_shift=3.0):
    rng = np.random.default_rng(seed)
    big = ndimage.gaussian_filter(rng.standard_normal((H + 20, W + 20)), 1.5) * 200 + 300
    true = rng.uniform(-max_shift, max_shift, (T, 2))
    mov = np.stack([ndimage.shift(big, -s, order=3, mode="nearest")[10:10 + H, 10:10 + W] for s in true])
    mov += rng.normal(0, 2, mov.shape)
    return mov.astype(np.float32), true, big[10:10 + H, 10:10 + W].astype(np.float32)


def test_rigid_outputs_and_memmap_layout(tmp_path):
    mov, true, _ = _movie()
    r = motion_correct(mov, tmp_path, "s1", max_shifts=(5, 5), chunk_frames=25)
    assert r.mmap_path.name == "s1_d1_48_d2_56_d3_1_order_C_frames_60.mmap"
    assert not list(tmp_path.glob("*.partial"))
    err = r.shifts - true
    err -= err.mean(axis=0)
    assert np.sqrt(np.mean(err ** 2)) < 0.05
    Yr, dims, T = open_memmap(r.mmap_path)
    assert Yr.shape == (48 * 56, 60) and Yr.dtype == np.float32 and dims == (48, 56) and T == 60
    assert r.mmap_path.stat().st_size == 48 * 56 * 60 * 4
    assert float(np.min(Yr)) >= 0.0
    frames = frames_from_memmap(Yr, dims, 0, 60)
    np.testing.assert_array_equal(Yr[:, 7], frames[7].ravel(order="F"))
    # corrected frames agree with each other in the interior
    inner = frames[:, 6:-6, 6:-6]
    assert np.std(inner, axis=0).mean() < 0.3 * np.std(mov[:, 6:-6, 6:-6], axis=0).mean()
    sh = np.loadtxt(tmp_path / "shifts.csv", delimiter=",", skiprows=1)
    assert (tmp_path / "shifts.csv").read_text().splitlines()[0] == "frame,shift_y,shift_x"
    np.testing.assert_allclose(sh[:, 1:], r.shifts, atol=1e-3)
    np.testing.assert_array_equal(sh[:, 0], np.arange(60))
    assert np.load(tmp_path / "template.npy").shape == (48, 56)
    info = json.loads((tmp_path / "motion.json").read_text())
    assert info["n_frames"] == 60 and info["offset"] == r.offset and info["timing"]["frames_per_s"] > 0
    assert info["correlation"]["mean_after"] > info["correlation"]["mean_before"]
    s = load_motion_summary(tmp_path)
    assert s["mean_after"].shape == (48, 56) and s["corr_after"].shape == (60,)


def test_negative_values_offset(tmp_path):
    mov, _, _ = _movie(T=30)
    mov -= 400.0  # many negative values
    r = motion_correct(mov, tmp_path, "neg", max_shifts=(5, 5))
    Yr, dims, _ = open_memmap(r.mmap_path)
    # offset = -(raw movie minimum), as CaImAn's min_mov; registered values never go below
    # their raw frame's minimum, so the memmap is non-negative
    assert r.offset == pytest.approx(-float(mov.min())) and float(np.min(Yr)) >= 0.0
    frames = frames_from_memmap(Yr, dims, 0, 30)
    info = json.loads((tmp_path / "motion.json").read_text())
    assert info["offset"] == pytest.approx(r.offset)
    # offset is exactly what was added: compare with an un-offset run on positive data
    r2 = motion_correct(mov + 1000.0, tmp_path / "pos", "pos", max_shifts=(5, 5))
    f2 = frames_from_memmap(open_memmap(r2.mmap_path)[0], dims, 0, 30)
    assert r2.offset == 0.0
    np.testing.assert_allclose(frames - r.offset, f2 - 1000.0, atol=0.05)


def test_motion_correct_false_copies_frames(tmp_path):
    mov, _, _ = _movie(T=20)
    r = motion_correct(mov, tmp_path, "raw", motion_correct=False)
    Yr, dims, _ = open_memmap(r.mmap_path)
    np.testing.assert_allclose(frames_from_memmap(Yr, dims, 0, 20), mov + r.offset, atol=1e-3)
    assert np.all(r.shifts == 0) and not (tmp_path / "shifts_pw.npz").exists()


@pytest.mark.parametrize("mode", [True, False, "copy", "min"])
def test_border_nan_modes_in_memmap(tmp_path, mode):
    mov, _, _ = _movie(T=12, max_shift=3.0, seed=5)
    r = motion_correct(mov, tmp_path, "b", max_shifts=(5, 5), border_nan=mode)
    frames = frames_from_memmap(open_memmap(r.mmap_path)[0], (48, 56), 0, 12)
    k = int(np.argmax(r.shifts[:, 0]))  # frame moved down the most: empty rows at the top
    assert r.shifts[k, 0] > 1.2
    top = frames[k, 0]
    if mode is True:
        assert np.isnan(top).all() and np.isfinite(frames[k, 10:-10, 10:-10]).all()
    elif mode is False:
        np.testing.assert_allclose(top, r.offset, atol=1e-4)
    elif mode == "copy":  # replicated edge content: finite, varying, within the frame's range
        assert np.isfinite(frames).all() and np.ptp(top) > 1.0
        assert top.min() >= mov[k].min() + r.offset - 20 and top.max() <= mov[k].max() + r.offset + 20
    else:
        np.testing.assert_allclose(top, np.nanmin(mov[k]) + r.offset, atol=1e-3)


def test_piecewise_and_two_processes_match_one(tmp_path):
    mov, true, _ = _movie(T=48, H=64, W=64)
    kw = {"pw_rigid": True, "max_shifts": (4, 4), "strides": (24, 24), "overlaps": (12, 12), "max_deviation_rigid": 2,
              "chunk_frames": 16}
    r1 = motion_correct(mov, tmp_path / "a", "pw", n_processes=1, **kw)
    r2 = motion_correct(mov, tmp_path / "b", "pw", n_processes=2, **kw)
    np.testing.assert_allclose(r1.shifts, r2.shifts, atol=1e-5)
    np.testing.assert_allclose(r1.pw_shifts, r2.pw_shifts, atol=1e-5)
    a = np.asarray(open_memmap(r1.mmap_path)[0])
    b = np.asarray(open_memmap(r2.mmap_path)[0])
    np.testing.assert_array_equal(a, b)  # same work split whatever the number of processes
    z = np.load(tmp_path / "a" / "shifts_pw.npz")
    assert z["shifts"].shape == (48, 3, 3, 2)
    np.testing.assert_array_equal(z["starts_y"], [0, 24, 28])
    err = r1.pw_shifts.mean(axis=(1, 2)) - true
    err -= err.mean(axis=0)
    assert np.sqrt(np.mean(err ** 2)) < 0.1


@pytest.mark.skipif(not ISXD.exists(), reason="Inscopix sample not available")
def test_real_inscopix_isxd(tmp_path):
    from cellextract.io import open_movie
    with open_movie(ISXD) as rd:
        r = motion_correct(rd, tmp_path, "isx", gSig_filt=(3, 3), max_shifts=(5, 5), n_processes=1)
    assert r.dims == (123, 108) and r.n_frames == 63  # 108 wide x 123 high
    assert np.all(np.abs(r.shifts) < 3.0)
    Yr, _dims, _T = open_memmap(r.mmap_path)
    assert np.isfinite(np.asarray(Yr)).all() and float(np.min(Yr)) >= 0.0
    info = json.loads((tmp_path / "motion.json").read_text())
    assert info["correlation"]["mean_after"] >= info["correlation"]["mean_before"] - 1e-3


def test_series_of_two_files_with_different_motion(tmp_path):
    from cellextract.io import load_series
    from cellextract.simulate import load_truth, shift_rmse, write_simulation

    paths = write_simulation(tmp_path / "sim.tif", parts=2, kind="2p", dims=(64, 72), frames=80,
                             motion="rigid", max_shift=3.0, seed=3, n_neurons=15)
    truth = load_truth(tmp_path / "sim_truth.h5")
    info = load_series(paths)
    r = motion_correct(info, tmp_path / "mc", "ser", max_shifts=(4, 4), n_processes=2, chunk_frames=20)
    assert r.n_frames == 80 and r.dims == (64, 72)
    assert shift_rmse(r.shifts, truth.shifts) < 0.15
    # both files aligned to the one template: corrected frames of each part agree
    Yr, dims, _ = open_memmap(r.mmap_path)
    from cellextract.io import open_series
    f = frames_from_memmap(Yr, dims, 0, 80)[:, 6:-6, 6:-6]
    with open_series(info) as rd:
        raw = rd.read(0, 80)[:, 6:-6, 6:-6]
    after = np.corrcoef(f[:40].mean(0).ravel(), f[40:].mean(0).ravel())[0, 1]
    before = np.corrcoef(raw[:40].mean(0).ravel(), raw[40:].mean(0).ravel())[0, 1]
    assert after > before and after > 0.9


@pytest.mark.parametrize("border_nan", ["copy", True])
def test_correlation_after_is_that_of_the_written_movie(tmp_path, border_nan):
    """The after-correction QC correlation (summed band by band while writing) equals the
    Pearson correlation of the memmap's frames with the template at the QC points."""
    from cellextract.motion.correct import Corrector
    from cellextract.motion.params import check_params
    mov, _, _ = _movie(T=40, seed=5)
    r = motion_correct(mov, tmp_path, "qc", max_shifts=(5, 5), border_nan=border_nan, n_processes=2,
                       chunk_frames=16)
    Yr, dims, T = open_memmap(r.mmap_path)
    frames = frames_from_memmap(Yr, dims, 0, T) - np.float32(r.offset)
    p = check_params(dims, max_shifts=(5, 5), border_nan=border_nan)
    expect = Corrector(r.template, p).correlation(frames)
    got = np.load(tmp_path / "mean_images.npz")["corr_after"]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5)
    before = np.load(tmp_path / "mean_images.npz")["corr_before"]
    assert np.nanmean(got) > np.nanmean(before)
