"""CaImAn-compatible HDF5 output (``caiman_output.hdf5``, ``cnmf/fit.hdf5``).

Layout (the one CaImAn's ``load_CNMF`` reads)::

    /                      attr  mmap_file (str)
    /dims                  (2,) int            (H, W)
    /params/<group>/<key>  numbers / arrays as datasets, None as the string 'NoneType';
                           strings are attributes of the group; dicts are sub-groups
    /estimates/A/{data,indices,indptr,shape}   CSC, (H*W, K), pixel = row + col*H
    /estimates/W/{data,indices,indptr,shape}   stored CSC, CaImAn reloads it as CSR
    /estimates/<name>      C, S, YrA, b, f, b0, sn, g, bl, c1, neurons_sn, lam,
                           idx_components, idx_components_bad, SNR_comp, r_values,
                           cnn_preds, Cn, dims: a dataset or 'NoneType'
    /cellextract/          not read by CaImAn's params loader: workflow params,
                           input metadata, version, an exact JSON copy of the params

Parameter groups that CaImAn does not know (our ``workflow`` group) are moved to
``/cellextract/params/`` so that ``CNMFParams.set`` never sees them.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields

import h5py
import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.estimates import Estimates
from cellextract.export._atomic import commit, remove_quietly, temp_path
from cellextract.log import get_logger

__all__ = ["CAIMAN_GROUPS", "save_estimates", "load_estimates", "normalize_footprints"]

log = get_logger(__name__)

#: Parameter groups of CaImAn's ``CNMFParams``.
CAIMAN_GROUPS = ("data", "patch", "preprocess", "init", "spatial", "temporal", "merging",
                 "quality", "online", "motion", "ring_CNN")

_NONE = "NoneType"
_SPARSE = ("A", "W")
_TUPLE_KEYS = ("dims", "medw", "sigma_smooth_snmf", "dxy", "max_shifts", "strides", "overlaps")
_TRACE_FIELDS = ("C", "S", "YrA")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("cellextract")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


# ----------------------------------------------------------------------------- footprints

def normalize_footprints(est: Estimates) -> Estimates:
    """Scale footprints to unit L2 norm and traces by the same factor.

    ``A[:, k] / n_k`` and ``C[k] * n_k`` (also ``S``, ``YrA``, ``bl``, ``c1``,
    ``neurons_sn``) keep the product ``A @ C`` unchanged. Zero columns are left alone.

    Parameters
    ----------
    est : Estimates
        ``A`` of shape (H*W, K), traces of shape (K, T).

    Returns
    -------
    Estimates
        A new object (``est`` is not modified); the same object if already normalized.
    """
    A = sp.csc_matrix(est.A)
    norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=0))).ravel()
    scale = np.where(norms > 0, norms, 1.0)
    if A.shape[1] == 0 or np.allclose(scale, 1.0, rtol=1e-5):
        return est
    kw = {fl.name: getattr(est, fl.name) for fl in fields(est)}
    kw["A"] = sp.csc_matrix(A @ sp.diags(1.0 / scale)).astype(A.dtype)
    for name in _TRACE_FIELDS:
        v = kw[name]
        if v is not None:
            kw[name] = (np.asarray(v) * scale[:, None]).astype(np.asarray(v).dtype)
    for name in ("bl", "c1", "neurons_sn"):
        v = kw[name]
        if v is not None:
            kw[name] = np.asarray(v) * scale
    return Estimates(**kw)


# ----------------------------------------------------------------------------- writing

def _write_sparse(group: h5py.Group, name: str, mat) -> None:
    csc = sp.csc_matrix(mat)
    g = group.create_group(name)
    g["data"] = csc.data
    g["indices"] = csc.indices
    g["indptr"] = csc.indptr
    g["shape"] = np.asarray(csc.shape, dtype=np.int64)


def _write_value(group: h5py.Group, key: str, value) -> None:
    """Write one value under ``group`` with CaImAn's conventions."""
    if value is None:
        group[key] = _NONE
    elif isinstance(value, str):
        group.attrs[key] = value
    elif isinstance(value, dict):
        sub = group.create_group(key)
        for k, v in value.items():
            _write_value(sub, str(k), v)
    elif sp.issparse(value):
        _write_sparse(group, key, value)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        group.attrs[key] = [str(v) for v in value]
    else:
        arr = np.asarray(value)
        if arr.dtype == object:
            # irregular lists (e.g. [None, 3]): keep as JSON text, still readable
            group.attrs[key] = json.dumps(value)
            return
        group[key] = arr


#: Keys of ours inside CaImAn's groups: stored with our groups, never under ``/params``.
OUR_KEYS: dict[str, tuple[str, ...]] = {"quality": ("max_event_pval",)}


def _split_params(params: dict) -> tuple[dict, dict]:
    caiman, ours = {}, {}
    for g, v in params.items():
        if g not in CAIMAN_GROUPS:
            ours[g] = v
            continue
        mine = OUR_KEYS.get(g, ())
        if isinstance(v, dict) and any(k in v for k in mine):
            ours[g] = {k: x for k, x in v.items() if k in mine}
            v = {k: x for k, x in v.items() if k not in mine}
        caiman[g] = v
    return caiman, ours


def _write_estimates(group: h5py.Group, est: Estimates) -> None:
    for fl in fields(est):
        if fl.name == "extra":
            continue
        v = getattr(est, fl.name)
        if fl.name == "dims":
            v = np.asarray(v, dtype=np.int64)
        _write_value(group, fl.name, v)


def _write_extra(group: h5py.Group, extra: dict) -> None:
    for key, v in extra.items():
        try:
            _write_value(group, str(key), v)
        except (TypeError, ValueError) as exc:
            log.warning("not saving extra item %r (%s)", key, exc)


def save_estimates(path: str | os.PathLike, est: Estimates, *, params: dict, mmap_file: str,
                   extra: dict | None = None) -> None:
    """Save a model in CaImAn's HDF5 layout (atomically: temp file then rename).

    Parameters
    ----------
    path : str or PathLike
        Destination ``.hdf5`` file.
    est : Estimates
        The model; footprints are normalized to unit L2 norm on the way (traces scaled).
    params : dict
        CaImAn grouped parameters ``{group: {key: value}}`` of plain JSON types.
        Groups CaImAn does not know (e.g. ``workflow``) go to ``/cellextract/params``.
    mmap_file : str
        Path of the memory-mapped movie the model was fitted on (root attribute).
    extra : dict or None
        Additional items for ``/cellextract/`` (input movie metadata, ...): strings,
        numbers, arrays and nested dicts of those.
    """
    est = normalize_footprints(est)
    caiman, ours = _split_params(params)
    tmp = temp_path(path)
    remove_quietly(tmp)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["mmap_file"] = str(mmap_file)
            f["dims"] = np.asarray(est.dims, dtype=np.int64)
            pg = f.create_group("params")
            for gname, gval in caiman.items():
                _write_value(pg, gname, dict(gval))
            _write_estimates(f.create_group("estimates"), est)
            ce = f.create_group("cellextract")
            ce.attrs["version"] = _version()
            ce.attrs["params_json"] = json.dumps(params)
            _write_value(ce, "params", ours)
            if est.extra:
                _write_extra(ce.create_group("estimates_extra"), est.extra)
            _write_extra(ce, extra or {})
        commit(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    log.info("saved %d components to %s", est.n_components, path)


# ----------------------------------------------------------------------------- reading

def _decode(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
        return [_decode(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_dataset(ds: h5py.Dataset, key: str):
    v = ds[()]
    v = _decode(v) if isinstance(v, (bytes, str)) or np.ndim(v) == 0 else v
    if isinstance(v, str) and v == _NONE:
        return None
    return v


def _read_group(group: h5py.Group) -> dict:
    out: dict = {}
    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            out[key] = _read_dataset(item, key)
        elif key in _SPARSE and "indptr" in item:
            shape = tuple(int(s) for s in item["shape"][()])
            mat = sp.csc_matrix((item["data"][()], item["indices"][()], item["indptr"][()]),
                                shape=shape)
            out[key] = mat.tocsr() if key == "W" else mat
        else:
            out[key] = _read_group(item)
    for key, val in group.attrs.items():
        out[key] = _decode(val)
    return out


def _plain(v):
    """Arrays to lists, numpy scalars to Python (for params)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return v.tolist()
    return _decode(v)


def _estimates_from_dict(d: dict, extra: dict) -> Estimates:
    names = {fl.name for fl in fields(Estimates)} - {"extra"}
    kw = {k: v for k, v in d.items() if k in names}
    kw["dims"] = tuple(int(x) for x in np.asarray(kw["dims"]).ravel())
    if kw.get("A") is None:
        H, W = kw["dims"]
        kw["A"] = sp.csc_matrix((H * W, 0), dtype=np.float32)
    for k in ("idx_components", "idx_components_bad"):
        if kw.get(k) is not None:
            kw[k] = np.asarray(kw[k], dtype=int)
    return Estimates(**kw, extra=extra)


def load_estimates(path: str | os.PathLike) -> tuple[Estimates, dict, dict]:
    """Load a file written by :func:`save_estimates` (or by CaImAn).

    Parameters
    ----------
    path : str or PathLike
        A CaImAn-layout HDF5 file.

    Returns
    -------
    est : Estimates
        The model (unknown estimates keys are ignored).
    params : dict
        Grouped parameters; the exact JSON copy when present, else rebuilt from ``/params``.
    extra : dict
        Contents of ``/cellextract/`` (without params), plus ``mmap_file``.
    """
    with h5py.File(path, "r") as f:
        est_d = _read_group(f["estimates"])
        if "dims" not in est_d or est_d["dims"] is None:
            est_d["dims"] = f["dims"][()]
        params = _plain(_read_group(f["params"])) if "params" in f else {}
        extra = _read_group(f["cellextract"]) if "cellextract" in f else {}
        mmap_file = _decode(f.attrs.get("mmap_file", ""))
    exact = extra.pop("params_json", None)
    ours = extra.pop("params", {}) or {}
    est_extra = extra.pop("estimates_extra", {}) or {}
    if exact:
        params = json.loads(exact)
    else:
        for g, v in _plain(ours).items():
            params[g] = {**params[g], **v} if isinstance(v, dict) and isinstance(params.get(g), dict) else v
    extra["mmap_file"] = mmap_file
    return _estimates_from_dict(est_d, est_extra), params, extra
