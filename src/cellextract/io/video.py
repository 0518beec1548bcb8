"""AVI / MP4 movie reader (OpenCV ``VideoCapture``).

Colour frames are converted to gray with ``cv2.COLOR_BGR2GRAY``. Reading is sequential
and frame-exact: the reader keeps the capture positioned after the last frame read; a
read that starts elsewhere decodes forward to it (rewinding to frame 0 when going back),
because container seeks are not frame-accurate for inter-frame codecs such as FMP4. The frame count is taken from
the container header when its last frame decodes and the next does not; otherwise (the
real nVista AVIs' headers say twice their frame count) the frames are counted by
decoding the file once; the frame rate implied by the decoded frames' time stamps is
then recorded as ``metadata["effective_fr"]`` when it differs from the header fps (the
real AVIs: 20 fps header, frames time-stamped at 10 Hz). ``fr`` stays the header value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellextract.errors import InputError
from cellextract.io.base import MovieReader
from cellextract.log import get_logger

logger = get_logger(__name__)


def _to_gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    if frame.ndim == 3:
        return frame[..., 0]
    return frame


class VideoReader(MovieReader):
    """Reader for ``.avi``/``.mp4`` movies; ``fr`` is the container's fps (None if 0)."""

    format = "video"

    def __init__(self, path):
        import cv2

        self.path = Path(path)
        self._cv2 = cv2
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise InputError(f"{self.path}: OpenCV cannot open this video (corrupt or unsupported codec)")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self.close()
            raise InputError(f"{self.path}: video has no readable frames")
        gray = _to_gray(frame)
        self.dims = tuple(int(n) for n in gray.shape)
        self.dtype = np.dtype(gray.dtype)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fr = fps if np.isfinite(fps) and fps > 0 else None
        self.start_time = None
        self.metadata = {"fourcc": self._fourcc(), "color": bool(frame.ndim == 3 and frame.shape[2] > 1
                                                                 and not _is_gray(frame))}
        header_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        try:
            self.n_frames = self._count_frames(header_count)
        except BaseException:
            self.close()
            raise
        self.metadata["header_frame_count"] = header_count
        self.invalid = np.zeros(self.n_frames, dtype=bool)
        self._next = None  # index of the frame the capture will decode next

    def _fourcc(self) -> str:
        code = int(self._cap.get(self._cv2.CAP_PROP_FOURCC) or 0)
        return "".join(chr((code >> (8 * k)) & 0xFF) for k in range(4)).strip("\x00")

    def _count_frames(self, header_count: int) -> int:
        """Confirm the header's frame count by decoding its last frame, else count."""
        cv2 = self._cv2
        if header_count > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, header_count - 1)
            ok, _ = self._cap.read()
            ok_after, _ = self._cap.read()
            if ok and not ok_after:
                return header_count
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        n, t_first, t_last = 0, None, None
        while self._cap.grab():
            n += 1
            t_last = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
            t_first = t_last if t_first is None else t_first
        if n > 1 and t_last > t_first:
            eff = 1000.0 * (n - 1) / (t_last - t_first)
            self._check_duration(header_count, n, eff)
            if self.fr is None or abs(eff - self.fr) > 1e-3 * self.fr:
                self.metadata["effective_fr"] = eff
                logger.warning("%s: header says %s fps and %d frames, but %d frames decode with "
                               "time stamps at %.4g Hz (fr keeps the header value)",
                               self.path, self.fr, header_count, n, eff)
        return n

    def _check_duration(self, header_count: int, n: int, eff: float) -> None:
        """Raise InputError when the decodable frames cover less time than the header says."""
        if not self.fr or header_count <= 0:
            return
        promised = header_count / self.fr
        found = n / eff
        if found < promised - 2.0 / min(self.fr, eff):
            raise InputError(f"{self.path}: truncated video: header promises {promised:.4g} s "
                             f"({header_count} frames at {self.fr:g} fps) but only {n} frames "
                             f"({found:.4g} s) decode")

    def _seek(self, index: int) -> None:
        """Position the capture on frame ``index`` by decoding (exact for every codec).

        ``CAP_PROP_POS_FRAMES`` seeks are not frame-accurate for inter-frame codecs, so
        the reader rewinds to frame 0 when it must go back and grabs its way forward.
        """
        if self._next is None or index < self._next:
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            self._next = 0
        while self._next < index:
            if not self._cap.grab():
                self._next = None
                raise InputError(f"{self.path}: cannot decode frame {index} of {self.n_frames} "
                                 "(corrupt or truncated video)")
            self._next += 1

    def _read(self, start: int, stop: int) -> np.ndarray:
        self._seek(start)
        out = np.empty((stop - start, *self.dims), dtype=np.float32)
        for i in range(stop - start):
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._next = None
                raise InputError(f"{self.path}: cannot decode frame {start + i} of {self.n_frames} "
                                 "(corrupt or truncated video)")
            out[i] = _to_gray(frame)
        self._next = stop
        return out

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None


def _is_gray(frame: np.ndarray) -> bool:
    return bool(np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(frame[..., 1], frame[..., 2]))
