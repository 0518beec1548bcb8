"""Write-to-temporary-then-rename helpers shared by the exporters."""

from __future__ import annotations

import os
from pathlib import Path


def temp_path(path: str | os.PathLike) -> Path:
    """Return a temporary sibling of ``path`` (same directory, same suffix).

    The suffix is kept because some writers (``isx``) infer the format from it.

    Parameters
    ----------
    path : str or PathLike
        Final destination.

    Returns
    -------
    Path
        ``<dir>/.<stem>.tmp<pid><suffix>``.
    """
    p = Path(path)
    return p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")


def remove_quietly(path: str | os.PathLike) -> None:
    """Delete ``path`` if it exists."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def commit(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Atomically move a finished temporary file onto its final name."""
    os.replace(tmp, final)
