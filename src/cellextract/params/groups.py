"""Parameter groups: one frozen dataclass per CaImAn group, plus a ``workflow`` group.

Field names are CaImAn's. Each field carries a :class:`Rule` in its metadata that
states the allowed type and values; :mod:`cellextract.params.validate` enforces it.
The dataclasses hold *resolved* values (``fr`` is a float, pairs are tuples, ``K`` is
an int or None); their defaults live in :mod:`cellextract.params.table`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Rule", "GROUPS", "GROUP_NAMES", "rule_for", "group_fields", "ALIASES"]


@dataclass(frozen=True)
class Rule:
    """Allowed values of one parameter.

    Parameters
    ----------
    kind : str
        One of ``'bool'``, ``'int'``, ``'float'``, ``'choice'``, ``'pair_int'``,
        ``'pair_float'``, ``'list_int'``, ``'border_nan'``.
    low, high : float or None
        Inclusive bounds (``low_open`` / ``high_open`` make them exclusive). For pairs
        and lists the bounds apply to every element.
    choices : tuple of str
        Allowed values of a ``'choice'`` field.
    nullable : bool
        None (JSON null) is allowed.
    auto : bool
        The string ``'auto'`` is allowed (resolved by the loader).
    doc : str
        One-line description (from the spec's analysis table).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    auto: bool = False
    doc: str = ""

    def allowed(self) -> str:
        """Return a short human description of the allowed values."""
        base = {
            "bool": "true or false",
            "int": "an integer",
            "float": "a number",
            "pair_int": "an integer or a pair of integers [y, x]",
            "pair_float": "a number or a pair of numbers [y, x]",
            "list_int": "a list of integers",
            "border_nan": "true, false, 'copy' or 'min'",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
        }[self.kind]
        rng = self.range_text()
        if rng:
            base += (" with every value " if self.kind.startswith(("pair", "list")) else " ") + rng
        if self.nullable:
            base += ", or null"
        if self.auto:
            base += ", or 'auto'"
        return base

    def range_text(self) -> str:
        """Return the bounds as text, e.g. ``'>= 0'`` or ``'in [0, 1]'``."""
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{_num(lo)}, {_num(hi)}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {_num(lo)}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {_num(hi)}"
        return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def par(kind: str, doc: str, **kw: Any):
    """Declare a dataclass field with its :class:`Rule` (no default: resolution sets all)."""
    return field(metadata={"rule": Rule(kind, doc=doc, **kw)})


@dataclass(frozen=True)
class DataParams:
    """Dataset properties (CaImAn group ``data``)."""

    fr: float = par("float", "Imaging rate in frames per second ('auto': from metadata, else 30)",
                    low=0, low_open=True, auto=True, nullable=True)
    decay_time: float = par("float", "Length of a typical calcium transient in seconds", low=0, low_open=True)
    dxy: tuple[float, float] = par("pair_float", "Spatial resolution of the field of view", low=0, low_open=True)


@dataclass(frozen=True)
class MotionParams:
    """NoRMCorre motion correction (CaImAn group ``motion``)."""

    motion_correct: bool = par("bool", "If True, motion correction will be performed")
    pw_rigid: bool = par("bool", "If True, piecewise-rigid motion correction, else rigid")
    gSig_filt: tuple[int, int] | None = par("pair_int", "High-pass filter kernel size (null: no filter)",
                                            low=1, nullable=True)
    max_shifts: tuple[int, int] = par("pair_int", "Maximum shift per dimension in pixels", low=0)
    strides: tuple[int, int] = par("pair_int", "Shift in pixels between pw-rigid patches", low=1)
    overlaps: tuple[int, int] = par("pair_int", "Overlap in pixels between pw-rigid patches", low=0)
    max_deviation_rigid: int = par("int", "Maximum deviation of patch shifts from the rigid shift", low=0)
    border_nan: bool | str = par("border_nan", "Handling of NaN borders: true, false, 'copy' or 'min'")
    niter_rig: int = par("int", "Template refinement iterations of rigid registration", low=1)
    upsample_factor_grid: int = par("int", "Upsampling factor of the pw-rigid shift field", low=1)
    splits_rig: int = par("int", "Number of chunks for rigid registration", low=1)
    splits_els: int = par("int", "Number of chunks for pw-rigid registration", low=1)
    num_frames_split: int = par("int", "Frames per chunk when building templates", low=1)


@dataclass(frozen=True)
class InitParams:
    """Component initialization (CaImAn group ``init``)."""

    K: int | None = par("int", "Components per patch (null/'auto': unlimited for corr_pnr)",
                        low=1, nullable=True, auto=True)
    gSig: tuple[int, int] = par("pair_int", "Radius of an average neuron in pixels", low=1)
    gSiz: tuple[int, int] = par("pair_int", "Bounding box size of a neuron (null: 2*gSig+1, forced odd)",
                                low=1, nullable=True)
    ssub: int = par("int", "Spatial downsampling factor", low=1)
    tsub: int = par("int", "Temporal downsampling factor", low=1)
    method_init: str = par("choice", "Initialization method",
                           choices=("corr_pnr", "greedy_roi", "sparse_nmf"))
    min_corr: float = par("float", "Minimum correlation-image value of a seed (corr_pnr)", low=0, high=1)
    min_pnr: float = par("float", "Minimum peak-to-noise ratio of a seed (corr_pnr)", low=0)
    ssub_B: int = par("int", "Spatial downsampling of the ring-model background", low=1)
    ring_size_factor: float = par("float", "Ring radius as a multiple of gSig", low=0, low_open=True)
    nb: int = par("int", "Number of global background components (0: ring model)", low=0)
    rolling_sum: bool = par("bool", "Rolling sum for greedy_roi seed detection")
    rolling_length: int = par("int", "Window length of the rolling sum (frames)", low=1)
    normalize_init: bool = par("bool", "Normalize pixels by their median before initialization")
    center_psf: bool = par("bool", "Center the PSF filter (1P data)")
    init_iter: int = par("int", "Initialization iterations (corr_pnr)", low=1)
    alpha_snmf: float = par("float", "Sparsity penalty of sparse NMF", low=0)
    max_iter_snmf: int = par("int", "Iterations of sparse NMF", low=1)


@dataclass(frozen=True)
class PreprocessParams:
    """Noise and AR estimation (CaImAn group ``preprocess``)."""

    p: int = par("int", "Order of the autoregressive model (0, 1 or 2)", low=0, high=2)
    noise_method: str = par("choice", "Averaging of the PSD for noise estimation",
                            choices=("mean", "median", "logmexp"))
    noise_range: tuple[float, float] = par("pair_float", "Frequency range (fraction of fr) for noise PSD",
                                           low=0, high=0.5)
    lags: int = par("int", "Autocovariance lags used to estimate AR coefficients", low=1)
    max_num_samples_fft: int = par("int", "Maximum frames used for the noise PSD", low=1)


@dataclass(frozen=True)
class TemporalParams:
    """Temporal update and deconvolution (CaImAn group ``temporal``)."""

    p: int = par("int", "Order of the autoregressive model (0, 1 or 2)", low=0, high=2)
    method_deconvolution: str = par("choice", "Deconvolution method", choices=("oasis",))
    bas_nonneg: bool = par("bool", "Non-negative baseline")


@dataclass(frozen=True)
class SpatialParams:
    """Spatial update (CaImAn group ``spatial``)."""

    update_background_components: bool = par("bool", "Update the background in each iteration")


@dataclass(frozen=True)
class PatchParams:
    """Patch processing (CaImAn group ``patch``)."""

    rf: int | None = par("int", "Half-size of a patch in pixels (null: one patch)", low=1, nullable=True)
    stride: int = par("int", "Overlap between neighboring patches in pixels", low=0)
    only_init: bool = par("bool", "Return the values after initialization in each patch")
    nb_patch: int = par("int", "Background components per patch", low=0)
    low_rank_background: bool = par("bool", "Low-rank background (null: derived from nb)", nullable=True)
    del_duplicates: bool = par("bool", "Delete duplicate components in patch overlaps")
    border_pix: int = par("int", "Pixels to exclude around each border", low=0)
    n_processes: int = par("int", "Processes for patches (capped at available CPUs)", low=1, nullable=True)


@dataclass(frozen=True)
class MergingParams:
    """Merging of components (CaImAn group ``merging``)."""

    merge_thr: float = par("float", "Trace correlation threshold for merging", low=0, high=1)


@dataclass(frozen=True)
class QualityParams:
    """Component evaluation (CaImAn group ``quality``)."""

    min_SNR: float = par("float", "SNR above which traces are accepted", low=0)
    SNR_lowest: float = par("float", "SNR below which traces are rejected", low=0)
    rval_thr: float = par("float", "Spatial correlation above which components are accepted", low=-1, high=1)
    rval_lowest: float = par("float", "Spatial correlation below which components are rejected", low=-1, high=1)
    use_cnn: bool = par("bool", "Use the CNN classifier")
    min_cnn_thr: float = par("float", "CNN score above which components are accepted", low=0, high=1)
    cnn_lowest: float = par("float", "CNN score below which components are rejected", low=0, high=1)
    gSig_range: tuple[int, ...] | None = par("list_int", "Neuron sizes tried by the CNN (null: gSig)",
                                             low=1, nullable=True)
    max_event_pval: float | None = par(
        "float", "Reject components whose strongest transient noise alone would produce anywhere "
        "in the recording with a probability above this (null: no such test; not in CaImAn)",
        low=0, high=1, nullable=True)


@dataclass(frozen=True)
class WorkflowParams:
    """Options of this workflow that are not CaImAn parameters."""

    refit: bool = par("bool", "Re-run CNMF seeded with the first estimates")
    event_threshold: float = par("float", "Threshold on deconvolved activity for neural events", low=0)
    export_nwb: bool = par("bool", "Also export an NWB file")
    temp_memmap: bool = par("bool", "Delete the motion-corrected memmap at the end")
    overwrite_params: bool = par("bool", "Parameter file values override the analysis table")


GROUPS: dict[str, type] = {
    "data": DataParams,
    "motion": MotionParams,
    "init": InitParams,
    "preprocess": PreprocessParams,
    "temporal": TemporalParams,
    "spatial": SpatialParams,
    "patch": PatchParams,
    "merging": MergingParams,
    "quality": QualityParams,
    "workflow": WorkflowParams,
}
GROUP_NAMES: tuple[str, ...] = tuple(GROUPS)

#: CaImAn files repeat some keys in several groups; they are stored once.
ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("temporal", "nb"): ("init", "nb"),
    ("spatial", "nb"): ("init", "nb"),
}


def group_fields(group: str) -> tuple[str, ...]:
    """Return the field names of ``group`` in declaration order."""
    return tuple(f.name for f in fields(GROUPS[group]))


def rule_for(group: str, key: str) -> Rule:
    """Return the :class:`Rule` of ``group.key`` (KeyError if it does not exist)."""
    for f in fields(GROUPS[group]):
        if f.name == key:
            return f.metadata["rule"]
    raise KeyError(f"{group}.{key}")
