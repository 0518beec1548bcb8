"""Previews: produced for 0, 1 and many cells; cell choice; helpers."""

import numpy as np
import pytest
from matplotlib.image import imread

from cellextract.previews._style import decimate, zscore
from cellextract.previews.cells import contour_level, plot_cells, select_highlighted
from cellextract.previews.events import event_statistics, event_times, plot_events
from cellextract.previews.init_images import plot_init_images
from cellextract.previews.run import make_previews, preview_names


def files_for(T, n_files):
    edges = np.linspace(0, T, n_files + 1).astype(int)
    return [{"path": f"/d/part{k}.tif", "start_frame": int(edges[k]),
             "n_frames": int(edges[k + 1] - edges[k]), "period_s": 0.1, "start_time_s": None,
             "invalid_mask": None, "is_isxd": False} for k in range(n_files)]


def assert_png(path, min_w=400, min_h=300):
    img = imread(str(path))
    assert img.shape[0] >= min_h and img.shape[1] >= min_w
    assert img[..., :3].std() > 0.01  # not blank


def test_make_previews_series(tmp_path, make_estimates):
    est = make_estimates(K=8, T=120, dims=(30, 40), seed=3)
    files = files_for(120, 2)
    files[1]["invalid_mask"] = np.r_[np.ones(5, bool), np.zeros(55, bool)]
    rng = np.random.default_rng(0)
    out = make_previews(tmp_path, est, files, fr=10.0, pnr=rng.gamma(2, 2, (30, 40)),
                        corr=rng.uniform(0, 1, (30, 40)), min_corr=0.8, min_pnr=5)
    assert sorted(p.name for p in out) == sorted(preview_names(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(preview_names(2))
    for p in out:
        assert_png(p)


@pytest.mark.parametrize("K", [0, 1, 30])
def test_cells_and_events_for_0_1_many_cells(tmp_path, make_estimates, K):
    est = make_estimates(K=K, T=120, dims=(30, 40), seed=K)
    inv = np.zeros(60, bool)
    inv[:5] = True
    for kind in ("raw", "denoised"):
        assert_png(plot_cells(tmp_path / f"{kind}.png", est, kind=kind, fr=10.0, frames=(60, 120),
                              invalid=inv))
    assert_png(plot_events(tmp_path / "ev.png", est, fr=10.0, boundaries=[0.0, 6.0]))


def test_no_accepted_cells_message(tmp_path, make_estimates):
    est = make_estimates(K=3, T=50, dims=(20, 20))
    est.idx_components = np.array([], int)
    est.idx_components_bad = np.arange(3)
    a = plot_cells(tmp_path / "c.png", est, kind="raw", fr=10.0)
    b = plot_events(tmp_path / "e.png", est, fr=10.0)
    full = plot_cells(tmp_path / "f.png", make_estimates(K=3, T=50, dims=(20, 20)), fr=10.0)
    # the message figure is a single panel: smaller than the two-panel figure
    assert imread(str(a)).shape[1] < imread(str(full)).shape[1]
    assert_png(b)


def test_highlight_choice_spans_snr_and_is_sorted(make_estimates):
    est = make_estimates(K=60, T=20, dims=(20, 20))
    est.idx_components = np.arange(0, 60, 2)  # 30 accepted
    est.SNR_comp = np.arange(60, dtype=float)
    sel = select_highlighted(est, n=20)
    assert len(sel) == 20
    assert set(sel) <= set(est.idx_components)
    snr = est.SNR_comp[sel]
    assert np.all(np.diff(snr) < 0)  # highest to lowest
    assert snr[0] == 58 and snr[-1] == 0  # both ends of the range
    few = select_highlighted(est, n=50)
    assert len(few) == 30


def test_plot_cells_rejects_bad_kind(tmp_path, make_estimates):
    with pytest.raises(ValueError):
        plot_cells(tmp_path / "x.png", make_estimates(K=2, T=10), kind="dff", fr=10.0)


def test_event_times_and_statistics(make_estimates):
    est = make_estimates(K=2, T=10, dims=(10, 10))
    est.S = np.zeros((2, 10), np.float32)
    est.S[0, [1, 4, 9]] = 1.0
    est.S[1, 3] = 2.0
    inv = np.zeros(10, bool)
    inv[9] = True
    t = event_times(est, np.array([0, 1]), fr=2.0, frames=(0, 10), invalid=inv)
    np.testing.assert_allclose(t[0], [0.5, 2.0])
    np.testing.assert_allclose(t[1], [1.5])
    rates, iei = event_statistics(t, duration_s=4.5)
    np.testing.assert_allclose(rates, [2 / 4.5, 1 / 4.5])
    assert iei[0] == pytest.approx(1.5) and np.isnan(iei[1])
    # threshold in noise units of the second cell: 2.0 is not > 1.0 * 2.5
    est.neurons_sn = np.array([0.1, 2.5])
    t = event_times(est, np.array([1]), fr=2.0, frames=(0, 10), event_threshold=1.0)
    assert t[0].size == 0


def test_helpers():
    z = zscore(np.array([[1.0, 2.0, 3.0, np.nan], [5.0, 5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(np.nanmean(z[0]), 0, atol=1e-12)
    np.testing.assert_allclose(np.nanstd(z[0]), 1)
    np.testing.assert_array_equal(z[1], 0)
    t = np.arange(10000) / 10.0
    y = np.sin(t)[None, :]
    t2, y2 = decimate(t, y, max_points=1000)
    assert t2.size <= 1000 and y2.max() == pytest.approx(1, abs=1e-3)
    img = np.zeros((5, 5))
    img[2, 2], img[2, 3] = 3.0, 1.0
    assert contour_level(img, energy=0.9) == 3.0
    assert contour_level(img, energy=0.95) == 1.0


def test_init_images(tmp_path):
    rng = np.random.default_rng(1)
    p = plot_init_images(tmp_path / "i.png", pnr=rng.gamma(2, 2, (25, 35)),
                         corr=rng.uniform(0, 1, (25, 35)))
    assert_png(p, min_w=900)


def overlaps(boxes):
    return [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]


def test_cell_labels_and_trace_names_do_not_overlap(make_estimates):
    from cellextract.previews._style import plt
    from cellextract.previews.cells import cells_figure

    import scipy.sparse as sp

    # 20 cells packed 4-5 pixels apart in a 150 x 150 image: labels collide unless moved
    H = W = 150
    est = make_estimates(K=20, T=100, dims=(H, W), seed=4)
    est.idx_components = np.arange(20)
    yy, xx = np.mgrid[0:H, 0:W]
    cols = []
    for k in range(20):
        img = np.exp(-((yy - 60 - 4 * (k // 4)) ** 2 + (xx - 60 - 5 * (k % 4)) ** 2) / 2.0)
        img[img < 0.05] = 0
        v = img.ravel(order="F")
        cols.append(v / np.linalg.norm(v))
    est.A = sp.csc_matrix(np.array(cols).T)
    fig = cells_figure(est, kind="raw", fr=10.0)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax_fp, ax_tr = fig.axes[:2]
    labels = [t for t in ax_fp.texts if t.get_text().startswith("C")]
    assert len(labels) == 20
    assert overlaps([t.get_window_extent(r) for t in labels]) == []
    ticks = [t.get_window_extent(r) for t in ax_tr.get_yticklabels()]
    assert len(ticks) == 20 and overlaps(ticks) == []
    # titles of the two panels do not overlap each other or the figure title
    heads = [ax_fp.title.get_window_extent(r), ax_tr.title.get_window_extent(r),
             fig._suptitle.get_window_extent(r)]
    assert overlaps(heads) == []
    plt.close(fig)
