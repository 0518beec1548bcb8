"""Run a stage from a Snakemake script: log to the rule's log, one-line errors, exit status."""

from __future__ import annotations

import sys
import time
import traceback

from cellextract.errors import CellextractError
from cellextract.log import get_logger, setup_logging


def run_stage(name: str, log_file: str | None, fn, *args, **kwargs) -> None:
    """Call ``fn(*args, **kwargs)`` with logging set up; exit 1 on any error.

    A user error (:class:`~cellextract.errors.CellextractError`) is logged as one line; an
    unexpected error is logged with its traceback. Either way the process exits with status
    1 and Snakemake removes the rule's outputs.
    """
    setup_logging(log_file)
    log = get_logger(f"cellextract.stage.{name}")
    t0 = time.perf_counter()
    log.info("%s: started", name)
    try:
        fn(*args, **kwargs)
    except CellextractError as exc:
        log.error("%s failed: %s", name, exc)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - anything else is a bug: keep the traceback in the log
        log.error("%s failed with an unexpected error:\n%s", name, traceback.format_exc())
        sys.exit(1)
    log.info("%s: done in %.1f s", name, time.perf_counter() - t0)
