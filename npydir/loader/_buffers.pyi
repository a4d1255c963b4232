"""Type stub of the compiled ``npydir.loader._buffers`` (src_cython/_buffers.pyx)."""

from typing import final

import numpy as np
from typing_extensions import Self

@final
class Lease:
    @property
    def nbytes(self) -> int: ...

@final
class BlockPool:
    capacity: int
    allocated: int
    def __new__(cls, capacity: int) -> Self: ...
    @property
    def idle(self) -> int: ...
    def close(self) -> None: ...
    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
