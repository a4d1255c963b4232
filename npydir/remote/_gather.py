"""``gather_windows`` for remote arrays: one range request per run of touching windows.

Windows are sorted by start; windows that overlap or touch become one byte range (so no byte
is fetched twice and none that no window needs).  Up to ``concurrency`` ranges are in flight;
each is copied into the batch buffer as it arrives (cast, scaled and strided by the local
kernel when asked).  Windows that run past an end with ``pad`` other than "error" fetch the
rows they reflect or repeat, mapped exactly as the local kernel maps them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernel import windows as _w


def gather_remote(x: Any, starts: Any, window: int, *, step: int = 1, out: Any = None,
                  dtype: Any = None, scale: Any = None, pad: str = "error",
                  threads: int | None = None) -> np.ndarray:
    """:func:`npydir.gather_windows` for a :class:`~npydir.remote.RemoteArray` ``x``."""
    shape = x.shape
    if len(shape) not in (1, 2):
        raise ValueError(
            f"x must be 1-D [samples] or 2-D [samples, channels], "
            f"found {len(shape)}-D shape {shape}"
        )
    n = shape[0]
    channels = shape[1] if len(shape) == 2 else 1
    src = x.dtype
    # x's shape and dtype over one element of memory: the local checks run on it unchanged
    stand = np.lib.stride_tricks.as_strided(np.zeros(1, src), (n, channels), (0, 0))
    _, st, window, step, out, dt, scale = _w._prepare(
        stand, starts, window, step, out, dtype, scale, pad, threads
    )
    if out.size == 0:
        return out
    header, meta = x._hdr()
    row = channels * src.itemsize
    base = header.offset
    simple = dt == src and step == 1 and scale is None

    inside = (st >= 0) & (st <= n - window)
    ks = np.flatnonzero(inside)
    ranges: list[tuple[int, int]] = []
    jobs: list[tuple[int, np.ndarray, Any]] = []  # (first row, windows, padded-row map)
    if ks.size:
        order = ks[np.argsort(st[ks], kind="stable")]
        s_sorted = st[order]
        ends = s_sorted + window
        reach = np.maximum.accumulate(ends)
        # a new run starts where a window begins after every earlier one ended
        new = np.ones(order.size, bool)
        new[1:] = s_sorted[1:] > reach[:-1]
        heads = np.flatnonzero(new)
        tails = np.append(heads[1:], order.size)
        for h, t in zip(heads.tolist(), tails.tolist()):
            lo, hi = int(s_sorted[h]), int(reach[t - 1])
            ranges.append((base + lo * row, base + hi * row))
            jobs.append((lo, order[h:t], None))
    for k in np.flatnonzero(~inside).tolist():
        idx, outside = _w._map_rows(st[k] + np.arange(0, window, step), n, pad)
        used = idx if outside is None else idx[~outside]
        if used.size == 0:  # every row is zero padding
            out[k] = 0
            continue
        lo, hi = int(used.min()), int(used.max()) + 1
        ranges.append((base + lo * row, base + hi * row))
        jobs.append((lo, np.array([k]), (idx, outside)))

    def deliver(i: int, data: Any) -> None:
        lo, wins, padded = jobs[i]
        block = np.frombuffer(data, src).reshape(-1, channels)
        if padded is not None:
            idx, outside = padded
            local = idx - lo if outside is None else np.where(outside, 0, idx - lo)
            vals = block[local].astype(dt)
            if outside is not None:
                vals[outside] = 0
            if scale is not None:
                vals *= dt.type(scale)
            out[wins[0]] = vals
        elif simple:
            for k in wins.tolist():
                r = int(st[k]) - lo
                out[k] = block[r : r + window]
        else:
            rel = st[wins] - lo
            out[wins] = _w.gather_windows(block, rel, window, step=step, dtype=dt,
                                          scale=scale, threads=1)

    x._store.client.read_ranges(x._rel, ranges, meta, deliver)
    return out
