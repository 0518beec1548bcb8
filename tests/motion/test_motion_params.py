"""Bad motion parameters are rejected with one-line messages naming key and value."""

import numpy as np
import pytest

from cellextract.errors import ParameterError
from cellextract.motion.params import check_params
from cellextract.motion.run import motion_correct


@pytest.mark.parametrize("kw, match", [
    ({"max_shifts": (-1, 5)}, r"motion\.max_shifts: must be >= 0"),
    ({"max_shifts": "5"}, r"motion\.max_shifts: expected an integer"),
    ({"max_shifts": (1.5, 2)}, r"motion\.max_shifts: expected an integer"),
    ({"pw_rigid": True, "strides": (24, 24), "overlaps": (24, 24)}, r"motion\.strides: must be larger than motion\.overlaps"),
    ({"pw_rigid": True, "strides": (16, 48), "overlaps": (24, 24)}, r"strides=\[16, 48\], overlaps=\[24, 24\]"),
    ({"strides": (0, 4)}, r"motion\.strides: must be >= 1"),
    ({"overlaps": (-2, 4)}, r"motion\.overlaps: must be >= 0"),
    ({"max_deviation_rigid": -1}, r"motion\.max_deviation_rigid: must be >= 0"),
    ({"border_nan": "nearest"}, r"motion\.border_nan: got 'nearest', allowed True, False, 'copy', 'min'"),
    ({"border_nan": None}, r"motion\.border_nan"),
    ({"gSig_filt": 0}, r"motion\.gSig_filt: must be > 0"),
    ({"gSig_filt": "big"}, r"motion\.gSig_filt"),
    ({"niter_rig": 0}, r"motion\.niter_rig: must be >= 1"),
    ({"upsample_factor_grid": 0}, r"motion\.upsample_factor_grid"),
    ({"n_processes": 0}, r"motion\.n_processes"),
    ({"pw_rigid": "yes"}, r"motion\.pw_rigid: expected true or false"),
    ({"foo": 1}, r"motion: unknown parameter"),
])
def test_rejected(kw, match):
    with pytest.raises(ParameterError, match=match):
        check_params((256, 256), **kw)


def test_checked_against_frame_size():
    with pytest.raises(ParameterError, match=r"motion\.max_shifts: \[30, 30\] too large for 40x40"):
        check_params((40, 40), max_shifts=(30, 30))
    with pytest.raises(ParameterError, match=r"motion\.strides\+overlaps: patches of 12x12 px are too small"):
        check_params((100, 100), pw_rigid=True, strides=(8, 8), overlaps=(4, 4), max_shifts=(5, 5))


def test_defaults_and_scalars_accepted():
    p = check_params((256, 256), max_shifts=6, gSig_filt=3, strides=48, overlaps=24, border_nan=False)
    assert p.max_shifts == (6, 6) and p.gSig_filt == (3.0, 3.0) and p.border_nan is False
    assert check_params((256, 256)).border_nan == "copy"


def test_motion_correct_validates_before_writing(tmp_path):
    mov = np.zeros((5, 32, 32), np.float32)
    with pytest.raises(ParameterError, match="max_shifts"):
        motion_correct(mov, tmp_path / "out", "x", max_shifts=(-3, 3))
    assert not (tmp_path / "out").exists()
