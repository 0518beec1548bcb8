"""Writing the memmap: large row blocks with direct I/O, everything else through the page cache.

Each band of the second pass ends in writes of several MB of contiguous memmap rows.
Through the page cache every such byte costs a copy into a freshly allocated page (and,
on virtual machines whose free memory is handed back to the host, a host fault per
page: 5-8 s of CPU for a 3 GB memmap on the benchmark VM) plus the later writeback.
With ``O_DIRECT`` the device reads the buffer itself: the page-aligned middle of each
large write goes straight to the disk (3 GB in ~1.3 s of wall time and ~0.05 s of CPU on
that VM, the writing thread waiting while the others compute), the unaligned head and
tail bytes go through the page cache. Filesystems without direct I/O (tmpfs, some FUSE
and network mounts) refuse it with ``EINVAL`` and get plain buffered writes.
``CELLEXTRACT_DIRECT_IO=0`` in the environment turns direct I/O off.
"""

from __future__ import annotations

import errno
import os

import numpy as np

from cellextract.motion.buffers import PAGE

MIN_DIRECT = 1 << 20  #: smaller writes go through the page cache


def direct_io_enabled() -> bool:
    """False when ``CELLEXTRACT_DIRECT_IO`` is set to 0/false/no/off."""
    return os.environ.get("CELLEXTRACT_DIRECT_IO", "1").strip().lower() not in ("0", "false", "no", "off")


def pwrite_all(fd: int, arr, offset: int) -> None:
    """Write all bytes of ``arr`` (array or buffer) at byte ``offset`` of ``fd``,
    retrying short writes."""
    buf = memoryview(np.ascontiguousarray(arr) if isinstance(arr, np.ndarray) else arr).cast("B")
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


class RowWriter:
    """Write byte ranges of one file, the page-aligned middle of large ones with direct I/O.

    Parameters
    ----------
    path : str or Path
        File to write (it exists, e.g. preallocated).
    direct : bool, optional
        Try ``O_DIRECT`` (default: :func:`direct_io_enabled`).
    """

    def __init__(self, path, *, direct: bool | None = None):
        self.fd = os.open(os.fspath(path), os.O_WRONLY)
        self.dfd = None
        if (direct_io_enabled() if direct is None else direct) and hasattr(os, "O_DIRECT"):
            try:
                self.dfd = os.open(os.fspath(path), os.O_WRONLY | os.O_DIRECT)
            except OSError:
                self.dfd = None

    @property
    def direct(self) -> bool:
        """Whether direct I/O is (still) in use."""
        return self.dfd is not None

    def write(self, arr: np.ndarray, offset: int) -> None:
        """Write the C-contiguous array ``arr`` at byte ``offset``.

        Direct I/O is used for the aligned middle when the array's address has the same
        remainder modulo the page size as ``offset``
        (:func:`cellextract.motion.buffers.aligned_view`).
        """
        a = np.ascontiguousarray(arr)
        buf = memoryview(a).cast("B")
        n = len(buf)
        if self.dfd is not None and n >= MIN_DIRECT:
            head = -offset % PAGE
            mid = (n - head) // PAGE * PAGE
            if mid > 0 and (a.ctypes.data + head) % PAGE == 0:
                done = self._direct(buf[head:head + mid], offset + head)
                pwrite_all(self.fd, buf[:head], offset)
                pwrite_all(self.fd, buf[head + done:], offset + head + done)
                return
        pwrite_all(self.fd, buf, offset)

    def _direct(self, buf: memoryview, offset: int) -> int:
        """Bytes of ``buf`` written with direct I/O (the rest is left to the caller)."""
        done = 0
        try:
            while done < len(buf):
                k = os.pwrite(self.dfd, buf[done:], offset + done)
                if k <= 0 or k % PAGE:
                    return done + max(k, 0)
                done += k
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            os.close(self.dfd)  # this filesystem refuses direct I/O: page cache from now on
            self.dfd = None
        return done

    def close(self) -> None:
        """Close the file descriptors."""
        for fd in (self.fd, self.dfd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.fd, self.dfd = -1, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
