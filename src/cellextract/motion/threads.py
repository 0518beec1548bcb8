"""Limit BLAS / OpenCV threads while correcting in the calling process.

The registration uses many small batched matrix products; with OpenBLAS's default of one
thread per core they run *slower* (spin-waiting threads, 3x on a loaded 2-core machine)
and they compete with the worker processes. :func:`single_threaded` sets OpenBLAS (via
``threadpoolctl`` when installed, else directly through the loaded library's
``*openblas_set_num_threads*`` symbol) and OpenCV to one thread and restores them after.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

_SET = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
        "scipy_openblas_set_num_threads")
_GET = ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
        "scipy_openblas_get_num_threads")


def _openblas_libs() -> list[tuple[object, object]]:
    """``(set, get)`` function pairs of the OpenBLAS libraries mapped in this process."""
    out, seen = [], set()
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
    except OSError:
        return out
    for p in sorted(paths):
        if p in seen:
            continue
        seen.add(p)
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        for s, g in zip(_SET, _GET):
            if hasattr(lib, s) and hasattr(lib, g):
                out.append((getattr(lib, s), getattr(lib, g)))
                break
    return out


@contextmanager
def single_threaded():
    """Context in which OpenBLAS and OpenCV use one thread (restored on exit)."""
    import cv2
    cv_n = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    try:
        if threadpool_limits is not None:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
        else:
            libs = _openblas_libs()
            before = [int(g()) for _, g in libs]
            for s, _ in libs:
                s(1)
            try:
                yield
            finally:
                for (s, _), n in zip(libs, before):
                    s(n)
    finally:
        cv2.setNumThreads(cv_n)
