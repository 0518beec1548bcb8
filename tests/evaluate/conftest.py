"""Small synthetic movies with known footprints for the evaluation tests."""

from __future__ import annotations

import numpy as np
import pytest
from eval_synth import gaussian_footprint, make_movie, spike_traces  # noqa: F401 (re-exported)

from cellextract.cnmf.estimates import Estimates


@pytest.fixture
def movie():
    return make_movie()


@pytest.fixture
def estimates(movie):
    Yr, A, C = movie
    YrA = (A.T @ Yr - (A.T @ A) @ C - A.T.sum(axis=1).A * 5.0).astype(np.float32)
    return Estimates(A=A, C=C, YrA=np.asarray(YrA, dtype=np.float32), dims=(40, 44))
