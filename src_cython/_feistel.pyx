# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Window starts of shuffled positions, for :class:`npydir.Batches` (one pass, no GIL).

The same keyed mixed-radix Feistel permutation as :class:`npydir._permutation.
FeistelPermutation` (its pure-NumPy twin, which the tests compare against bit for bit),
followed by the position -> recording -> start-sample mapping of ``Batches``.  NumPy needs
~40 ns per position for this (a few dozen array passes); here it is a few ns, so drawing a
batch of small windows costs little next to copying them.
"""

from libc.stdint cimport int64_t, uint64_t


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t _encrypt(uint64_t v, const uint64_t* keys, Py_ssize_t rounds,
                              uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t left = v // b
    cdef uint64_t right = v - left * b
    cdef uint64_t modulus = a, other = b, f, t
    cdef Py_ssize_t r
    for r in range(rounds):
        f = ((_mix(right ^ keys[r]) >> 32) * modulus) >> 32
        f += left
        if f >= modulus:
            f -= modulus
        left = right
        right = f
        t = modulus
        modulus = other
        other = t
    return left * b + right


cdef inline void _encrypt4(uint64_t* v, const uint64_t* keys, Py_ssize_t rounds,
                           uint64_t a, uint64_t b) noexcept nogil:
    """:func:`_encrypt` of four values at once, in place.  One value's rounds are a chain of
    dependent multiplies; four chains written side by side keep the multiplier busy and
    let the compiler pair them in vector registers (measured here: ~10.5 ns a position
    against ~15 ns one at a time)."""
    cdef uint64_t left[4]
    cdef uint64_t right[4]
    cdef uint64_t f[4]
    cdef uint64_t modulus = a, other = b, t
    cdef Py_ssize_t r, j
    for j in range(4):
        left[j] = v[j] // b
        right[j] = v[j] - left[j] * b
    for r in range(rounds):
        for j in range(4):
            f[j] = ((_mix(right[j] ^ keys[r]) >> 32) * modulus) >> 32
            f[j] += left[j]
            if f[j] >= modulus:
                f[j] -= modulus
            left[j] = right[j]
            right[j] = f[j]
        t = modulus
        modulus = other
        other = t
    for j in range(4):
        v[j] = left[j] * b + right[j]


def starts_of(const int64_t[::1] positions, const uint64_t[::1] keys, uint64_t a, uint64_t b,
              uint64_t n, const int64_t[::1] seg_lo, const int64_t[::1] cum, int64_t stride,
              int64_t[::1] out):
    """out[k] = start sample of window ``perm(positions[k])`` (no permutation if no keys).

    The caller guarantees ``0 <= positions[k] < n``, ``len(cum) == len(seg_lo) + 1``,
    ``cum[0] == 0``, ``cum[-1] == n`` and ``len(out) == len(positions)``.
    """
    cdef Py_ssize_t k, lo, hi, mid
    cdef Py_ssize_t count = positions.shape[0]
    cdef Py_ssize_t rounds = keys.shape[0]
    cdef Py_ssize_t nseg = seg_lo.shape[0]
    cdef uint64_t w
    cdef int64_t wi
    cdef uint64_t quad[4]
    cdef Py_ssize_t j, head = 0
    cdef bint shuffled = rounds > 0 and n > 1
    with nogil:
        if shuffled:  # positions in fours, interleaved; the rest one at a time below
            head = count - count % 4
            for k in range(0, head, 4):
                for j in range(4):
                    quad[j] = <uint64_t>positions[k + j]
                _encrypt4(quad, &keys[0], rounds, a, b)
                for j in range(4):
                    out[k + j] = <int64_t>quad[j]
        for k in range(count):
            if k < head:
                w = <uint64_t>out[k]
            else:
                w = <uint64_t>positions[k]
                if shuffled:
                    w = _encrypt(w, &keys[0], rounds, a, b)
            if shuffled:
                while w >= n:  # cycle walking: rare, the domain is < n + sqrt(n)
                    w = _encrypt(w, &keys[0], rounds, a, b)
            wi = <int64_t>w
            # last recording whose first window index is <= wi
            lo = 0
            hi = nseg - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if cum[mid] <= wi:
                    lo = mid
                else:
                    hi = mid - 1
            out[k] = seg_lo[lo] + (wi - cum[lo]) * stride
