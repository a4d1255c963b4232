"""Type stub for the compiled window kernel (src_cython/_windows.pyx).

Every function but gather_plain trusts its arguments; call them through npydir.windows,
which validates.  gather_plain checks the common call itself and answers NOT_HANDLED for any
other.
"""

from typing import final

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

PAD_CODES: dict[str, int]
HAS_F16C: bool
HAS_STREAM: bool
LIMIT: int
MIN_BYTES_PER_THREAD: int
ADVISE_SAMPLE: int
NOT_HANDLED: int
CANCELLED: int
FORKED: int

@final
class CopyLane:
    def __new__(cls, concurrency: int = 1) -> Self: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def running(self) -> int: ...

@final
class PendingCopy:
    @property
    def queued(self) -> bool: ...
    def __new__(cls, lane: CopyLane | None = None) -> Self: ...
    def wait(self) -> int: ...
    def done(self) -> bool: ...
    def cancel(self) -> bool: ...

def first_bad_start(
    starts: npt.NDArray[np.int64], nrows: int, window: int, lo: int, hi: int
) -> int: ...
def gather(
    x: np.ndarray,
    starts: npt.NDArray[np.int64],
    window: int,
    out: np.ndarray,
    *,
    step: int = 1,
    pad: int = 0,
    src_code: int = -1,
    dst_double: bool = False,
    scale: float | None = None,
    threads: int = 1,
    lo: int = ...,
    hi: int = ...,
    cold_sample: int = 0,
    stream: bool = False,
    pending: PendingCopy | None = None,
) -> int: ...
def gather_plain(
    x: object,
    starts: object,
    window: object,
    step: object,
    out: object,
    pad: object,
    threads: object,
    stream: bool,
    cores: int,
    pending: PendingCopy | None = None,
) -> np.ndarray | int: ...
def mapping_of(x: object, depth: int = 8) -> object: ...
def pick_threads(threads: int | None, nwin: int, nbytes: int, cores: int) -> int: ...
def advise(
    x: np.ndarray,
    starts: npt.NDArray[np.int64],
    window: int,
    row_span: int,
    only_if_cold: bool,
    sample: int,
) -> int: ...
def half_to_float_bits(h: npt.NDArray[np.uint16], out: npt.NDArray[np.float32]) -> None: ...
def tune(
    block_bytes: int | None = None,
    small_window: int | None = None,
    spin_ns: int | None = None,
    advise_min_bytes: int | None = None,
    ahead_plain: bool | None = None,
    wait_spin_ns: int | None = None,
    runner_spin_ns: int | None = None,
) -> dict[str, int]: ...
def pool_helpers() -> int: ...
def runner_tasks() -> int: ...
def runner_inflight() -> int: ...
def runner_threads() -> int: ...
