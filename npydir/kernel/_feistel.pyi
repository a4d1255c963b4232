"""Type stub of the compiled ``npydir._feistel`` (src_cython/_feistel.pyx)."""

import numpy as np
import numpy.typing as npt

def batch_starts(
    batches: npt.NDArray[np.int64],
    batch_size: int,
    count: int,
    world_size: int,
    rank: int,
    keys: npt.NDArray[np.uint64],
    a: int,
    b: int,
    n: int,
    seg_lo: npt.NDArray[np.int64],
    cum: npt.NDArray[np.int64],
    stride: int,
    out: npt.NDArray[np.int64],
) -> int: ...
