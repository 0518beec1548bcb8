"""Automated component evaluation (CaImAn's): trace SNR, spatial consistency, CNN classifier.

Entry point: :func:`evaluate_components` (fills ``SNR_comp``, ``r_values``, ``cnn_preds``,
``idx_components``, ``idx_components_bad`` of an :class:`~cellextract.cnmf.estimates.Estimates`).

Modules
-------
snr
    SNR from the exceptionality of the largest transient of ``C + YrA``.
rvalues
    Spatial consistency of footprint and movie during the transients (streamed over the memmap).
select
    CaImAn's acceptance rule.
cnn
    Footprint-crop classifier, numpy inference, weights in ``cellextract/data/cnn_weights.npz``.
train, synth_crops, engine_crops
    Training script (``cellextract train-classifier``) and its labelled data.
"""

from .core import evaluate_components, evaluate_with_params
from .select import select_components
from .snr import compute_snr

__all__ = ["compute_snr", "evaluate_components", "evaluate_with_params", "select_components"]
