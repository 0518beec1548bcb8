import numpy as np
import pytest

from cellextract.evaluate.cnn import init_weights
from cellextract.evaluate.train import loss_and_grads, roc_auc


def test_roc_auc():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float64) for k, v in init_weights(rng).items()}
    X = rng.random((3, 32, 32))
    y = np.array([1, 0, 1])
    _, grads = loss_and_grads(params, X, y, l2=1e-3)
    for name in ("c1_w", "c2_w", "c3_b", "d1_w", "d2_b"):
        w = params[name]
        for flat in rng.choice(w.size, min(3, w.size), replace=False):
            i = np.unravel_index(flat, w.shape)
            old = w[i]
            w[i] = old + 1e-7
            lp, _ = loss_and_grads(params, X, y, l2=1e-3)
            w[i] = old - 1e-7
            lm, _ = loss_and_grads(params, X, y, l2=1e-3)
            w[i] = old
            num = (lp - lm) / 2e-7          # small step: avoids crossing ReLU kinks
            assert grads[name][i] == pytest.approx(num, rel=1e-3, abs=1e-8), name


def test_training_script_writes_loadable_weights(tmp_path, capsys):
    from cellextract.evaluate.cnn import load_weights, predict
    from cellextract.evaluate.synth_crops import make_dataset
    from cellextract.evaluate.train import main

    extra = tmp_path / "extra.npz"
    X, y, _ = make_dataset(20, seed=3)
    np.savez(extra, crops=X, labels=y)
    out = tmp_path / "w.npz"
    fix = tmp_path / "fix.npz"
    assert main(["--n-train", "300", "--n-val", "100", "--epochs", "1", "--out", str(out),
                 "--extra", str(extra), "--extra-repeat", "2", "--extra-val", str(extra),
                 "--fixture", str(fix)]) == 0
    assert "held-out ROC AUC" in capsys.readouterr().out
    params = load_weights(str(out))
    with np.load(fix) as z:
        np.testing.assert_allclose(predict(z["crops"], params=params), z["expected"], atol=1e-6)
    with np.load(out) as z:
        assert 0.0 <= float(z["meta_auc"]) <= 1.0 and "meta_auc_engine" in z.files
