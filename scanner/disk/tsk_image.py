"""pytsk3 image adapter: any block source seen as a ``pytsk3.Img_Info``."""

from __future__ import annotations

import pytsk3

from scanner.errors import SourceReadError
from scanner.sources.base import BlockSource, plans_reads, whole_local_path
from scanner.sources.base import will_read as pass_plan


class SourceImgInfo(pytsk3.Img_Info):
    """Serves TSK's reads from a block source (the dfvfs adapter pattern).

    Errors raised here reach TSK as a failed read and come back to us as ``IOError``
    from pytsk3; the walker translates those.
    """

    def __init__(self, source: BlockSource) -> None:
        self._source = source
        self.takes_plans = plans_reads(source)
        super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

    def read(self, offset: int, size: int) -> bytes:
        """Read for TSK; a source error becomes an ``IOError`` TSK understands."""
        try:
            return self._source.read_at(offset, size)
        except SourceReadError as exc:
            raise OSError(str(exc)) from exc

    def will_read(self, ranges: list[tuple[int, int]]) -> None:
        """Pass a read plan on to the source (if it takes plans)."""
        pass_plan(self._source, ranges)

    def get_size(self) -> int:
        """Size for TSK."""
        return self._source.size

    def close(self) -> None:
        """The source is closed by whoever opened it."""


def open_image(source: BlockSource) -> pytsk3.Img_Info:
    """An ``Img_Info`` for the source: native when its bytes are exactly a local file's
    (faster), adapted otherwise."""
    path = whole_local_path(source)
    if path is not None:
        return pytsk3.Img_Info(path)
    return SourceImgInfo(source)
