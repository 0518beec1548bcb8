"""Movie I/O: readers (isxd, tiff, avi/mp4), series concatenation, CaImAn memmaps, writers.

Public API
----------
open_movie(path) -> MovieReader
load_series(paths) -> SeriesInfo ; open_series(info) -> SeriesReader
write_tiff, write_isxd, write_avi (cellextract.io.writers)
cellextract.io.memmap: memmap_name, parse_memmap_name, create_memmap, open_memmap,
    frames_from_memmap, MemmapWriter
"""

from cellextract.io.base import MovieReader
from cellextract.io.memmap import (MemmapWriter, create_memmap, frames_from_memmap, memmap_name,
                                   open_memmap, parse_memmap_name)
from cellextract.io.movie import MOVIE_EXTENSIONS, open_movie
from cellextract.io.series import SeriesInfo, SeriesReader, load_series, open_series
from cellextract.io.writers import write_avi, write_isxd, write_tiff

__all__ = [
    "MovieReader", "open_movie", "MOVIE_EXTENSIONS",
    "SeriesInfo", "SeriesReader", "load_series", "open_series",
    "MemmapWriter", "create_memmap", "frames_from_memmap", "memmap_name", "open_memmap",
    "parse_memmap_name",
    "write_avi", "write_isxd", "write_tiff",
]
