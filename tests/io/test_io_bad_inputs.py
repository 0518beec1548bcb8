"""Every user-caused input problem raises a one-line InputError naming the file."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellextract.errors import InputError
from cellextract.io import SeriesInfo, load_series, open_movie, write_isxd, write_tiff

_SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared",
                             Path("/work/shared")) if p.is_dir()), Path("/work/shared"))

D = str(_SHARED / "data/inscopix") + "/"
MOV = np.random.default_rng(0).uniform(0, 200, size=(20, 16, 16)).astype(np.float32)


def _truncate(src, dst, keep):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:keep(len(data))])
    return dst


# each builder returns (path given to open_movie, substring that names it, message regex)
def missing(t):
    return t / "nope.tif", r"movie file not found"


def directory(t):
    (t / "d.tif").mkdir()
    return t / "d.tif", r"is a directory"


def bad_extension(t):
    (t / "m.txt").write_text("x")
    return t / "m.txt", r"unsupported movie extension '\.txt'"


def zero_bytes(t):
    (t / "e.tif").write_bytes(b"")
    return t / "e.tif", r"file is empty \(0 bytes\)"


def random_tif(t):
    (t / "r.tif").write_bytes(os.urandom(4096))
    return t / "r.tif", r"not a readable TIFF file"


def truncated_imagej_tif(t):
    write_tiff(t / "f.tif", MOV, fr=10)
    return _truncate(t / "f.tif", t / "tr.tif", lambda n: n // 2), r"corrupt or truncated TIFF"


def truncated_compressed_tif(t):
    import tifffile
    tifffile.imwrite(t / "z.tif", MOV, compression="zlib")
    return _truncate(t / "z.tif", t / "trz.tif", lambda n: n // 2), r"corrupt or truncated TIFF"


def truncated_tail_tif(t):
    write_tiff(t / "f.tif", MOV, fr=10)
    return _truncate(t / "f.tif", t / "tail.tif", lambda n: n - 100), r"corrupt or truncated TIFF"


def multichannel_tif(t):
    import tifffile
    tifffile.imwrite(t / "c.tif", np.zeros((3, 2, 8, 8), np.uint16), imagej=True,
                     metadata={"axes": "TCYX"})
    return t / "c.tif", r"several frame axes TC"


def random_isxd(t):
    (t / "r.isxd").write_bytes(os.urandom(4096))
    return t / "r.isxd", r"not a readable isxd file"


def truncated_isxd_header(t):
    return _truncate(D + "movie_part3.isxd", t / "h.isxd", lambda n: n // 2), r"not a readable isxd|isx cannot open"


def truncated_isxd_data(t):
    data = open(D + "movie_part3.isxd", "rb").read()
    (t / "d.isxd").write_bytes(data[:100000] + data[-2000:])  # header intact, frames missing
    return t / "d.isxd", r"truncated isxd: \d+ bytes of frame data, header promises 34 frames"


def cellset_isxd(t):
    return D + "cellset_series_part1.isxd", r"isxd file is not a movie \(it holds a cell set\)"


def eventset_isxd(t):
    return D + "sample_eventset_msr_1.isxd", r"isxd file is not a movie \(it holds an event set\)"


def zero_frame_avi(t):
    w = cv2.VideoWriter(str(t / "z.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (16, 16), False)
    w.release()
    return t / "z.avi", r"video has no readable frames"


def random_avi(t):
    (t / "r.avi").write_bytes(os.urandom(4096))
    return t / "r.avi", r"OpenCV cannot open this video"


def random_mp4(t):
    (t / "r.mp4").write_bytes(os.urandom(4096))
    return t / "r.mp4", r"OpenCV cannot open this video"


def truncated_avi(t):
    return (_truncate(D + "movie_part2_108x122x126.avi", t / "t.avi", lambda n: n // 2),
            r"truncated video: header promises 6.3 s \(126 frames at 20 fps\)")


SINGLE = [missing, directory, bad_extension, zero_bytes, random_tif, truncated_imagej_tif,
          truncated_compressed_tif, truncated_tail_tif, multichannel_tif, random_isxd,
          truncated_isxd_header, truncated_isxd_data, cellset_isxd, eventset_isxd,
          zero_frame_avi, random_avi, random_mp4, truncated_avi]


@pytest.mark.parametrize("build", SINGLE, ids=[f.__name__ for f in SINGLE])
def test_bad_movie_file(tmp_path, build):
    path, pattern = build(tmp_path)
    before = open(path, "rb").read() if os.path.isfile(path) else None
    with pytest.raises(InputError, match=pattern) as err:
        with open_movie(path) as r:
            r.read()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path))
    if before is not None:
        assert open(path, "rb").read() == before  # inputs are never modified
    # the same error surfaces through a series
    with pytest.raises(InputError, match=pattern):
        load_series([path])


def test_real_size_mismatch_names_both_files_and_sizes():
    a, b = D + "movie_part2_108x123x63.isxd", D + "movie_part3.isxd"
    with pytest.raises(InputError) as err:
        load_series([a, b])
    msg = str(err.value)
    assert "\n" not in msg and a in msg and b in msg
    assert "123x108" in msg and "128x128" in msg and "same size" in msg


def test_dtype_class_mismatch(tmp_path):
    write_tiff(tmp_path / "f.tif", MOV, fr=10)
    write_tiff(tmp_path / "u.tif", MOV.astype(np.uint16), fr=10)
    with pytest.raises(InputError, match=r"f\.tif has float32 pixels but .*u\.tif has uint16"):
        load_series([tmp_path / "f.tif", tmp_path / "u.tif"])


def test_frame_rate_mismatch(tmp_path):
    write_isxd(tmp_path / "a.isxd", MOV, fr=10.0, start_time=0)
    write_isxd(tmp_path / "b.isxd", MOV, fr=20.0, start_time=10)
    with pytest.raises(InputError, match=r"a\.isxd has frame rate 10 Hz but .*b\.isxd has 20 Hz"):
        load_series([tmp_path / "a.isxd", tmp_path / "b.isxd"])


def test_duplicate_file_in_series(tmp_path):
    write_tiff(tmp_path / "a.tif", MOV, fr=10)
    other = tmp_path / "sub" / ".." / "a.tif"
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match=r"appears more than once in the series"):
        load_series([tmp_path / "a.tif", other])


def test_empty_series():
    with pytest.raises(InputError, match=r"empty series: no movie files given"):
        load_series([])


def test_bad_series_json(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(InputError, match=r"s\.json: not a valid series description"):
        SeriesInfo.from_json(tmp_path / "s.json")
    with pytest.raises(InputError, match=r"series description not found"):
        SeriesInfo.from_json(tmp_path / "none.json")


def test_file_changed_after_load_series(tmp_path):
    write_tiff(tmp_path / "a.tif", MOV, fr=10)
    info = load_series([tmp_path / "a.tif"])
    write_tiff(tmp_path / "a.tif", MOV[:5], fr=10)
    from cellextract.io import open_series
    with pytest.raises(InputError, match=r"a\.tif: file changed since the series was loaded"):
        open_series(info).read(0, 2)


def test_read_out_of_range_is_index_error(tmp_path):
    write_tiff(tmp_path / "a.tif", MOV, fr=10)
    with open_movie(tmp_path / "a.tif") as r:
        with pytest.raises(IndexError, match=r"frame range 15:25 outside 0:20"):
            r.read(15, 25)
        with pytest.raises(ValueError, match="chunk must be >= 1"):
            next(r.iter_chunks(0))
