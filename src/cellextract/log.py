"""Logging helpers: one logger per module and a progress reporter with ETA.

Rules send the package's log records to the rule's ``log:`` file through
:func:`setup_logging`; long loops report progress with :class:`Progress`.
"""

from __future__ import annotations

import logging
import sys
import time

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """Return the package logger for module ``name`` (use ``__name__``)."""
    return logging.getLogger(name)


def setup_logging(log_file: str | None = None, *, level: int = logging.INFO) -> None:
    """Send ``cellextract`` log records to ``log_file`` (and stderr).

    Parameters
    ----------
    log_file : str or None
        Path of the rule's log file; None logs to stderr only.
    level : int
        Logging level for the ``cellextract`` logger.
    """
    root = logging.getLogger("cellextract")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter(_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="a"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    logging.captureWarnings(True)


class Progress:
    """Report progress of a loop over ``total`` items with rate and ETA.

    Parameters
    ----------
    total : int
        Number of items (frames, patches, ...).
    what : str
        Name of the items, e.g. ``"frames"``.
    logger : logging.Logger
        Where the progress lines go.
    every : float
        Minimum seconds between two log lines (the last item is always logged).
    """

    def __init__(self, total: int, what: str, logger: logging.Logger, *, every: float = 5.0):
        self.total = int(total)
        self.what = what
        self.logger = logger
        self.every = every
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = -1e9

    def update(self, n: int = 1, extra: str = "") -> None:
        """Mark ``n`` more items done and log a line if due."""
        self.done += n
        now = time.perf_counter()
        if now - self._last < self.every and self.done < self.total:
            return
        self._last = now
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        msg = (f"{self.what} {self.done}/{self.total} ({100.0 * self.done / max(self.total, 1):.0f}%), "
               f"{rate:.1f} {self.what}/s, elapsed {elapsed:.1f} s, ETA {eta:.1f} s")
        if extra:
            msg += f", {extra}"
        self.logger.info(msg)
