"""A keyed pseudo-random permutation of ``range(n)`` that is evaluated pointwise.

:class:`Batches` shuffles millions of windows per epoch.  Materialising
``rng.permutation(n)`` costs O(n) memory and time every epoch and in every DataLoader
worker; instead, position ``p`` of the shuffled order is computed on demand as
``permute(p)``, so drawing a batch of 32 windows costs O(32) whatever ``n`` is.

Construction: a Feistel network on the mixed-radix domain ``Z_a x Z_b`` with
``a = ceil(sqrt(n))`` and ``b = ceil(n / a)`` (so ``n <= a*b < n + a``), whose rounds
alternate the two radices ("FFX"-style: ``(L, R) -> (R, (L + F(R)) mod |L|)``, each round
invertible, so the network is a bijection of ``[0, a*b)`` for any round function ``F``).
``F`` is the splitmix64 finaliser of ``R ^ round_key``.  Restricting the network to
``[0, n)`` by *cycle walking* (re-encrypt until the value lands below ``n``) keeps it a
bijection; because ``a*b - n < a ~ sqrt(n)``, a value needs a second pass with probability
below ``1 / b``, so the walk almost never runs.  Four rounds for ``n >= 2**20`` (Luby and
Rackoff's bound for a pseudo-random permutation from pseudo-random round functions), ten
below, where small radices mix slowly and the cost does not matter.

The round keys come from ``numpy.random.SeedSequence([seed, epoch, ...])`` and the rounds
use only wrapping uint64 arithmetic, so the same ``(seed, epoch)`` gives the same order on
every platform, numpy version with the SeedSequence algorithm (stable since numpy 1.17) and
process.  This is a shuffle for training, not cryptography.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["FeistelPermutation"]

# Even round counts, so the radices end as (a, b).  Small radices need more rounds to mix
# well (NIST FF1 uses 10); large domains get by with fewer, and they are where time matters.
_ROUNDS_SMALL = 10
_ROUNDS_LARGE = 4
_LARGE = 1 << 20
# Domain separation: a permutation key never equals a key some other user of the same
# SeedSequence entropy would derive for another purpose.
_TAG = 0x6E70796469722D70  # "npydir-p"

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


_S32 = np.uint64(32)


def _mix_inplace(z: np.ndarray, scratch: np.ndarray) -> None:
    """splitmix64 finaliser of the uint64 array ``z``, in place (wraps, never warns)."""
    np.right_shift(z, _S30, out=scratch)
    z ^= scratch
    z *= _M1
    np.right_shift(z, _S27, out=scratch)
    z ^= scratch
    z *= _M2
    np.right_shift(z, _S31, out=scratch)
    z ^= scratch


class FeistelPermutation:
    """Bijection of ``[0, n)`` keyed by ``(seed, epoch)``, evaluated for any index array.

    Parameters
    ----------
    n : int
        Size of the permuted range.
    seed : int
        Non-negative integer key.
    epoch : int
        Non-negative epoch number; each epoch gives an independent-looking order.

    Examples
    --------
    >>> p = FeistelPermutation(10, seed=0, epoch=0)
    >>> sorted(p(np.arange(10)).tolist()) == list(range(10))
    True
    """

    def __init__(self, n: int, seed: int, epoch: int) -> None:
        if n < 0:
            raise ValueError(f"permutation size must be >= 0, got {n}")
        self.n = int(n)
        a = max(1, math.isqrt(max(self.n - 1, 0)) + 1)  # ceil(sqrt(n)) for n >= 1
        b = max(1, -(-self.n // a))
        #: the radices and round keys (also used by the compiled twin, npydir.kernel._feistel)
        self.a, self.b = a, b
        self._a, self._b = np.uint64(a), np.uint64(b)
        ss = np.random.SeedSequence([int(seed), int(epoch), _TAG])
        # numpy's stubs do not narrow generate_state's result by its dtype
        self.keys: npt.NDArray[np.uint64] = ss.generate_state(  # type: ignore[assignment]
            _ROUNDS_LARGE if self.n >= _LARGE else _ROUNDS_SMALL, dtype=np.uint64
        )
        self._keys = [np.uint64(k) for k in self.keys]

    def _encrypt(self, v: np.ndarray) -> np.ndarray:
        # In-place numpy on three buffers: drawing positions must stay cheap next to the
        # copy of their windows (~10 ns per position here, vs ~100 ns for a small window).
        b = self._b
        left = v // b  # in Z_a
        right = v - left * b  # in Z_b
        f = np.empty_like(v)
        scratch = np.empty_like(v)
        modulus = self._a  # of the left half; alternates with b each round
        for key in self._keys:
            np.bitwise_xor(right, key, out=f)
            _mix_inplace(f, scratch)
            # Lemire's multiply-shift maps the top 32 hash bits onto [0, modulus) without a
            # division (modulus < 2**32 because it is about sqrt(n)).
            f >>= _S32
            f *= modulus
            f >>= _S32
            f += left  # < 2 * modulus: one conditional subtraction
            np.subtract(f, modulus, out=f, where=f >= modulus)
            left, right, f = right, f, left
            modulus = b if modulus is self._a else self._a
        return left * b + right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Return ``permutation[positions]`` as an int64 array of the same shape."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n}), got [{pos.min()}, {pos.max()}]")
        if self.n <= 1:
            return pos.copy()
        flat = pos.reshape(-1).astype(np.uint64)
        out = self._encrypt(flat)
        limit = np.uint64(self.n)
        todo = np.flatnonzero(out >= limit)
        while todo.size:  # cycle walking: expected < 4 rounds, each on a shrinking subset
            out[todo] = self._encrypt(out[todo])
            todo = todo[out[todo] >= limit]
        return out.astype(np.int64).reshape(pos.shape)
