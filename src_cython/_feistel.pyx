# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Window starts of shuffled positions, for :class:`npydir.Batches` (one pass, no GIL).

The same keyed mixed-radix Feistel permutation as :class:`npydir.loader.permutation.
FeistelPermutation` (its pure-NumPy twin, which the tests compare against bit for bit),
followed by the position -> recording -> start-sample mapping of ``Batches``.  NumPy needs
~40 ns per position for this (a few dozen array passes); here it is a few ns, so drawing a
batch of small windows costs little next to copying them.  :func:`batch_starts` goes from
batch indices to starts in that pass, without position arrays in between
(benchmarks/bench_permutation.py has the numbers).
"""

from libc.stdint cimport int64_t, uint64_t

# Positions encrypted side by side: one position's rounds are a chain of dependent
# multiplies; eight chains written next to each other keep the multiplier busy (measured
# here: ~6 ns a position against ~8 with four and ~11 one at a time).
cdef enum:
    LANES = 8


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef struct Cipher:
    const uint64_t* keys
    Py_ssize_t rounds
    uint64_t a
    uint64_t b
    double inv_b      # 1 / b (see _split)


cdef inline void _split(const Cipher* c, uint64_t v, uint64_t* left, uint64_t* right) noexcept nogil:
    """left, right = divmod(v, b), for ``v < a * b < 2**63``.

    With a floating-point reciprocal instead of a 64-bit division (tens of cycles on many
    x86 CPUs).  ``v * (1 / b)`` is off from ``v / b`` by less than one: relative errors of
    2**-52 on a quotient below ``a <= 2**32``, plus the rounding of ``v`` itself (at most
    2**10 once ``v >= 2**53``, when ``b >= n / a >= 2**26``), divided by ``b``.  So the
    truncated estimate is the quotient or one off, and one correction step makes it exact
    (tests/loader/test_batches.py checks domains up to 2**62 at every radix edge).
    """
    cdef int64_t q = <int64_t>(<double>v * c.inv_b)
    cdef int64_t r = <int64_t>v - q * <int64_t>c.b
    if r < 0:
        q -= 1
        r += <int64_t>c.b
    elif r >= <int64_t>c.b:
        q += 1
        r -= <int64_t>c.b
    left[0] = <uint64_t>q
    right[0] = <uint64_t>r


cdef inline uint64_t _encrypt(const Cipher* c, uint64_t v) noexcept nogil:
    cdef uint64_t left, right
    cdef uint64_t modulus = c.a, other = c.b, f, t
    cdef Py_ssize_t r
    _split(c, v, &left, &right)
    for r in range(c.rounds):
        f = ((_mix(right ^ c.keys[r]) >> 32) * modulus) >> 32
        f += left
        if f >= modulus:
            f -= modulus
        left = right
        right = f
        t = modulus
        modulus = other
        other = t
    return left * c.b + right


cdef inline void _encrypt_lanes(const Cipher* c, int64_t* v) noexcept nogil:
    """:func:`_encrypt` of ``LANES`` values at once, in place (see LANES)."""
    cdef uint64_t left[LANES]
    cdef uint64_t right[LANES]
    cdef uint64_t f[LANES]
    cdef uint64_t modulus = c.a, other = c.b, t
    cdef Py_ssize_t r, j
    for j in range(LANES):
        _split(c, <uint64_t>v[j], &left[j], &right[j])
    for r in range(c.rounds):
        for j in range(LANES):
            f[j] = ((_mix(right[j] ^ c.keys[r]) >> 32) * modulus) >> 32
            f[j] += left[j]
            if f[j] >= modulus:
                f[j] -= modulus
            left[j] = right[j]
            right[j] = f[j]
        t = modulus
        modulus = other
        other = t
    for j in range(LANES):
        v[j] = <int64_t>(left[j] * c.b + right[j])


cdef void _permute_and_map(int64_t* v, Py_ssize_t count, const uint64_t* keys,
                           Py_ssize_t rounds, uint64_t a, uint64_t b, uint64_t n,
                           const int64_t* seg_lo, const int64_t* cum, Py_ssize_t nseg,
                           int64_t stride) noexcept nogil:
    """v[k] = start sample of window ``perm(v[k])``, in place (no permutation if no keys).

    The caller guarantees ``0 <= v[k] < n``, ``len(cum) == nseg + 1``, ``cum[0] == 0`` and
    ``cum[-1] == n``.
    """
    cdef Cipher c
    cdef Py_ssize_t k, lo, hi, mid, head = 0
    cdef uint64_t w
    cdef int64_t wi
    cdef bint shuffled = rounds > 0 and n > 1
    c.keys = keys
    c.rounds = rounds
    c.a = a
    c.b = b
    c.inv_b = 1.0 / <double>b
    if shuffled:
        head = count - count % LANES
        k = 0
        while k < head:
            _encrypt_lanes(&c, &v[k])
            k += LANES
    for k in range(count):
        w = <uint64_t>v[k]
        if shuffled:
            if k >= head:
                w = _encrypt(&c, w)
            while w >= n:  # cycle walking: rare, the domain is < n + sqrt(n)
                w = _encrypt(&c, w)
        wi = <int64_t>w
        if nseg == 1:
            v[k] = seg_lo[0] + wi * stride
            continue
        # last recording whose first window index is <= wi
        lo = 0
        hi = nseg - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cum[mid] <= wi:
                lo = mid
            else:
                hi = mid - 1
        v[k] = seg_lo[lo] + (wi - cum[lo]) * stride


def batch_starts(const int64_t[::1] batches, int64_t batch_size, int64_t count,
                 int64_t world_size, int64_t rank, const uint64_t[::1] keys, uint64_t a,
                 uint64_t b, uint64_t n, const int64_t[::1] seg_lo, const int64_t[::1] cum,
                 int64_t stride, int64_t[::1] out):
    """Starts of the windows of ``batches`` (batch indices of one rank), one after another
    in ``out``; returns how many were written.

    Batch ``i`` holds this rank's slots ``[i * batch_size, min((i + 1) * batch_size,
    count))``, slot ``s`` is position ``s * world_size + rank`` of the epoch's order, and
    its start is that of the window ``perm(position)`` (no permutation if no keys).  ``out`` must hold ``len(batches) *
    batch_size``.  Raises IndexError for a batch index outside ``[0, ceil(count /
    batch_size))`` or a position outside ``[0, n)`` (nothing is written then); the caller
    guarantees ``len(cum) == len(seg_lo) + 1``, ``cum[0] == 0`` and ``cum[-1] == n``.
    """
    cdef Py_ssize_t i, k, filled = 0, nb = batches.shape[0]
    cdef int64_t first, last, s, nbatches, pos, bad = -1
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or count < 0:
        raise ValueError(
            f"batch_starts: batch_size={batch_size}, world_size={world_size}, rank={rank}, "
            f"count={count}"
        )
    if out.shape[0] < nb * batch_size:
        raise ValueError(f"batch_starts: out holds {out.shape[0]}, needs {nb * batch_size}")
    nbatches = (count + batch_size - 1) // batch_size
    with nogil:
        for i in range(nb):
            if not 0 <= batches[i] < nbatches:
                bad = i
                break
            first = batches[i] * batch_size
            last = min(first + batch_size, count)
            # positions grow with the slot: the last one is the largest
            if (last - 1) * world_size + rank >= <int64_t>n:
                bad = i
                break
            pos = first * world_size + rank
            for s in range(first, last):
                out[filled] = pos
                filled += 1
                pos += world_size
        if bad < 0 and filled:
            _permute_and_map(&out[0], filled, &keys[0] if keys.shape[0] else NULL,
                             keys.shape[0], a, b, n, &seg_lo[0], &cum[0], seg_lo.shape[0],
                             stride)
    if bad >= 0:
        raise IndexError(
            f"batch_starts: batch {batches[bad]} has no windows in [0, {n}) for this rank "
            f"({nbatches} batches of {batch_size} of {count} slots, rank {rank} of {world_size})"
        )
    return filled
