from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from eval_synth import gaussian_footprint

from cellextract.evaluate import evaluate_components
from cellextract.evaluate.cnn import (CROP_SIZE, crop_image, crops_from_A, default_weights_path,
                                      load_weights, predict, predict_components)

FIXTURE = Path(__file__).parent / "data" / "cnn_fixture.npz"


def test_weights_file_is_small_and_documented():
    p = Path(str(default_weights_path()))
    assert p.stat().st_size < 1_000_000
    with np.load(p) as z:
        assert float(z["meta_auc"]) >= 0.95


def test_inference_reproduces_stored_predictions():
    with np.load(FIXTURE) as z:
        crops, labels, expected = z["crops"], z["labels"], z["expected"]
    got = predict(crops)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(got[labels == 1] > 0.5) and np.all(got[labels == 0] < 0.5)


def test_crop_is_centred_and_normalised():
    img = gaussian_footprint((60, 50), (20.3, 33.7), 3.0)
    c = crop_image(img, gSig=3)
    assert c.shape == (CROP_SIZE, CROP_SIZE) and c.max() == pytest.approx(1.0)
    np.testing.assert_allclose(c, c[::-1, ::-1], atol=0.03)          # symmetric about the centre
    A = sp.csc_matrix(img.ravel(order="F")[:, None])
    np.testing.assert_allclose(crops_from_A(A, (60, 50), gSig=3)[0], c, atol=1e-5)
    # a cell at the border is cropped with zeros outside the field of view
    edge = crops_from_A(sp.csc_matrix(gaussian_footprint((40, 40), (1, 20), 2.0).ravel(order="F")[:, None]),
                        (40, 40), gSig=2)[0]
    assert edge[:8].max() == 0


def _footprints(dims, specs):
    cols = [gaussian_footprint(dims, c, s).ravel(order="F") for c, s in specs]
    return sp.csc_matrix(np.stack(cols, axis=1))


def test_cells_score_high_and_junk_low():
    rng = np.random.default_rng(0)
    dims = (64, 64)
    A = _footprints(dims, [((20, 20), 2.5), ((40, 44), 3.0)])
    noise = np.zeros(dims)
    noise[20:40, 20:40] = rng.random((20, 20)) * (rng.random((20, 20)) < 0.4)
    line = np.zeros(dims)
    line[30:32, 5:60] = 1.0
    junk = sp.csc_matrix(np.stack([noise.ravel(order="F"), line.ravel(order="F")], axis=1))
    p = predict_components(sp.hstack([A, junk]).tocsc(), dims, gSig=3)
    assert np.all(p[:2] > 0.9) and np.all(p[2:] < 0.1)


def test_gSig_range_keeps_the_best_size():
    dims = (80, 80)
    A = _footprints(dims, [((40, 40), 7.0), ((20, 20), 2.0)])
    p_small = predict_components(A, dims, gSig=2)
    p_big = predict_components(A, dims, gSig=7)
    p_range = predict_components(A, dims, gSig=2, gSig_range=[2, 7])
    np.testing.assert_allclose(p_range, np.maximum(p_small, p_big))
    assert p_range[0] > 0.9 and p_range[0] > p_small[0]
    assert predict_components(sp.csc_matrix((6400, 0)), dims, gSig=3).shape == (0,)


def test_use_cnn_switch(estimates, movie):
    q = dict(fr=30.0, decay_time=0.4, min_SNR=2.5, SNR_lowest=0.5, rval_thr=0.85,
             rval_lowest=-1.0, min_cnn_thr=0.9, cnn_lowest=0.1, gSig=2)
    off = evaluate_components(estimates, movie[0], use_cnn=False, **q)
    on = evaluate_components(estimates, movie[0], use_cnn=True, **q)
    assert np.isnan(off.cnn_preds).all()
    assert np.all(on.cnn_preds > 0.9)
    # a strict CNN floor rejects everything only when the CNN is used
    strict = dict(q, cnn_lowest=0.9999999)
    assert evaluate_components(estimates, movie[0], use_cnn=True, **strict).idx_components.size == 0
    assert evaluate_components(estimates, movie[0], use_cnn=False, **strict).idx_components.size == 4


def test_weights_shape_check(tmp_path):
    params = dict(load_weights())
    params["c1_w"] = params["c1_w"][..., :4]
    bad = tmp_path / "w.npz"
    np.savez(bad, **params)
    with pytest.raises(ValueError):
        load_weights(str(bad))
