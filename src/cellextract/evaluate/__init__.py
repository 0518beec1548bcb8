"""Automated component evaluation (CaImAn's): trace SNR, spatial consistency, CNN classifier.

Main entry point: :func:`evaluate_components`. Modules: :mod:`.snr`, :mod:`.rvalues`,
:mod:`.select`, :mod:`.cnn` (numpy inference), :mod:`.train` (training script).
"""

from .core import evaluate_components
from .select import select_components
from .snr import compute_snr

__all__ = ["evaluate_components", "select_components", "compute_snr"]
