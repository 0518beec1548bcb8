import itertools

import numpy as np
import pytest

from cellextract.evaluate.select import select_components

TH = dict(min_SNR=3.0, SNR_lowest=0.5, rval_thr=0.85, rval_lowest=-1.0,
          min_cnn_thr=0.9, cnn_lowest=0.1)


def rule(snr, r, cnn, use_cnn):
    acc = r >= 0.85 or snr > 3.0 or (use_cnn and cnn >= 0.9)
    rej = r <= -1.0 or snr <= 0.5 or (use_cnn and cnn <= 0.1)
    return acc and not rej


@pytest.mark.parametrize("use_cnn", [False, True])
def test_truth_table(use_cnn):
    snrs = [0.2, 0.5, 1.0, 3.0, 3.1]       # <=lowest, =lowest, middle, =thr (not >), above
    rs = [-1.0, 0.0, 0.85, 0.9]             # =lowest, middle, =thr (>=), above
    cnns = [0.05, 0.1, 0.5, 0.9, 0.95]      # <=lowest, =lowest, middle, =thr, above
    combos = list(itertools.product(snrs, rs, cnns))
    snr, r, cnn = (np.array(v) for v in zip(*combos))
    good, bad = select_components(snr, r, cnn, use_cnn=use_cnn, **TH)
    expect = np.array([rule(*c, use_cnn) for c in combos])
    np.testing.assert_array_equal(good, np.nonzero(expect)[0])
    np.testing.assert_array_equal(bad, np.nonzero(~expect)[0])
    assert good.dtype == np.int64 and bad.dtype == np.int64


def test_use_cnn_switch_changes_the_result():
    snr = np.array([1.0, 5.0])
    r = np.array([0.1, 0.9])
    cnn = np.array([0.95, 0.05])
    g0, b0 = select_components(snr, r, cnn, use_cnn=False, **TH)
    g1, b1 = select_components(snr, r, cnn, use_cnn=True, **TH)
    assert g0.tolist() == [1] and b0.tolist() == [0]
    assert g1.tolist() == [0] and b1.tolist() == [1]


def test_nan_and_empty():
    g, b = select_components(np.array([4.0, np.nan]), np.array([np.nan, 0.9]), None, **TH)
    assert g.tolist() == [0, 1] and b.size == 0
    g, b = select_components(np.zeros(0), np.zeros(0), None, **TH)
    assert g.size == 0 and b.size == 0
    with pytest.raises(ValueError):
        select_components(np.zeros(2), np.zeros(2), None, use_cnn=True, **TH)
