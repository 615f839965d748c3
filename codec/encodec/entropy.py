"""The arithmetic coder of the EnCodec paper and its quantized CDF, bit-exact with the reference.

The paper: Défossez et al. 2022, arXiv:2210.13438, section 3.3; the coder step by step: ``docs/ecdc-format.md``
section 5.

A 24-bit range coder: every symbol keeps at least 2 of the 2^24 units, probabilities are floored to 1e-8 before the
CDF is quantized, bits leave as soon as the low and high ends of the range share them (MSB-first), and they are packed
LSB-first into bytes. The reference does this with Python integers one symbol at a time; here the symbol loop runs in
a numba kernel over int64 (the reference keeps the range below 2^62, so int64 is exact), and the CDFs of all
codebooks of a frame are built in one vectorised torch call with the reference's float32 operations.
"""

from __future__ import annotations

import math
from typing import Union

import numba
import numpy as np
import torch

TOTAL_RANGE_BITS = 24
MIN_RANGE = 2
ROUNDOFF = 1e-8

# Kernel status codes, turned into ArithmeticCodingError messages by the wrappers.
_OK, _END_OF_STREAM, _SEARCH_FAILED, _OVERFLOW, _BAD_SYMBOL = 0, 1, 2, 3, 4
_MESSAGES = {
    _END_OF_STREAM: "the arithmetic-coded stream ended sooner than expected",
    _SEARCH_FAILED: "arithmetic decoding failed (no symbol matches the stream: corrupt data, or LM probabilities that "
                    "differ from the encoder's)",
    _OVERFLOW: "the arithmetic coder's range outgrew 62 bits (a pathological or corrupt stream)",
    _BAD_SYMBOL: "a symbol lies outside the CDF it is coded with",
}
_MAX_BIT = 61  # the reference asserts max_bit <= 61 after every symbol


class ArithmeticCodingError(ValueError):
    """A symbol stream that cannot be coded or decoded."""


def _compiled(function):
    """``function`` compiled by numba, cached on disk where numba finds a folder it may write (beside this file, or
    its user cache under ``~/.cache``), else compiled afresh in each process: for a user who may write neither,
    ``cache=True`` raised "cannot cache function" from every command that imported the coder."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True)(function)


def min_bits_per_symbol(cardinality: int) -> float:
    """The fewest bits any symbol of a ``cardinality``-symbol alphabet costs, whatever the probabilities: every
    other symbol keeps ``MIN_RANGE`` of the 2^24 units, so the likeliest owns at most 2^24 - 2 (N - 1) of them, and
    coding it narrows the range by at least that fraction (1.76e-4 bits for 1024 symbols)."""
    total = 2 ** TOTAL_RANGE_BITS
    return -math.log2(1 - MIN_RANGE * (cardinality - 1) / total)


def max_symbols(bits: int, cardinality: int, streams: int = 1) -> int:
    """The most symbols that ``streams`` arithmetic-coded streams, each of one symbol or more, can decode to from
    ``bits`` bits in all.

    Before each symbol the range is at least 2^24 wide, each bit read doubles it, and each symbol divides it by at
    least ``2 ** min_bits_per_symbol``: a fresh stream (a range 1 wide) reads 24 bits before its first symbol and
    ``min_bits_per_symbol`` more for each further one (``docs/ecdc-format.md`` section 5.5). A header that claims
    more cannot be honest, and checking it costs nothing, where decoding it costs an LM step per frame.
    """
    spare = bits - TOTAL_RANGE_BITS * streams
    return 0 if spare < 0 else streams + 1 + math.floor(spare / min_bits_per_symbol(cardinality))


def max_stream_bytes(symbols: int) -> int:
    """The most bytes an arithmetic-coded stream of ``symbols`` symbols takes: the decoder reads the bits the encoder
    wrote, and at most 24 per symbol (a range at least 1 wide needs 24 doublings to reach 2^24)."""
    return (TOTAL_RANGE_BITS * symbols + 7) // 8


def quantized_cdfs(pdfs: torch.Tensor) -> np.ndarray:
    """Quantized CDFs [..., N] (int64, last value <= 2^24) of probabilities [..., N], as ``build_stable_quantized_cdf``.

    The operations and their order are the reference's, in float32 torch arithmetic: floor to 1e-8, scale by
    (1 - 2N/2^24) * 2^24, floor, add 2 to every symbol, cumulative sum.
    """
    pdfs = pdfs.detach().cpu()
    if pdfs.dtype != torch.float32:
        raise ArithmeticCodingError(f"probabilities must be float32 like the reference's, got {pdfs.dtype}")
    total_range = 2 ** TOTAL_RANGE_BITS
    alpha = MIN_RANGE * pdfs.shape[-1] / total_range
    if alpha > 1:
        raise ArithmeticCodingError(f"{pdfs.shape[-1]} symbols do not fit a {TOTAL_RANGE_BITS}-bit range")
    # in place after the first result: each fresh multi-MB temporary costs page faults (same values either way)
    scaled = (pdfs / ROUNDOFF).floor_().mul_(ROUNDOFF).mul_((1 - alpha) * total_range).floor_()
    ranges = scaled.long()
    ranges += MIN_RANGE
    return torch.cumsum(ranges, dim=-1).numpy()


@_compiled
def _encode_kernel(symbols, cdfs, state, out, nbits):  # pragma: no cover - compiled
    low, high, max_bit = state[0], state[1], state[2]
    total = np.int64(1) << TOTAL_RANGE_BITS
    status = _OK
    for i in range(symbols.shape[0]):
        symbol = symbols[i]
        if symbol < 0 or symbol >= cdfs.shape[1]:
            status = _BAD_SYMBOL
            break
        while high - low + 1 < total:
            low = 2 * low
            high = 2 * high + 1
            max_bit += 1
        if max_bit > _MAX_BIT + 1:
            status = _OVERFLOW
            break
        delta = high - low + 1
        range_low = np.int64(0) if symbol == 0 else cdfs[i, symbol - 1]
        range_high = cdfs[i, symbol] - 1
        high = low + ((range_high * delta) >> TOTAL_RANGE_BITS)
        low = low + ((range_low * delta + total - 1) >> TOTAL_RANGE_BITS)
        while max_bit >= 0:
            bit = low >> max_bit
            if bit != high >> max_bit:
                break
            low -= bit << max_bit
            high -= bit << max_bit
            max_bit -= 1
            if bit:
                out[nbits >> 3] |= np.uint8(1 << (nbits & 7))
            nbits += 1
        if max_bit > _MAX_BIT:
            status = _OVERFLOW
            break
    state[0], state[1], state[2] = low, high, max_bit
    return nbits, status


@_compiled
def _decode_kernel(cdfs, data, state, symbols):  # pragma: no cover - compiled
    low, high, current, max_bit, bitpos = state[0], state[1], state[2], state[3], state[4]
    total = np.int64(1) << TOTAL_RANGE_BITS
    available = np.int64(data.shape[0]) * 8
    status = _OK
    for i in range(cdfs.shape[0]):
        while high - low + 1 < total:
            if bitpos >= available or max_bit > _MAX_BIT:
                status = _END_OF_STREAM if bitpos >= available else _OVERFLOW
                break
            bit = (np.int64(data[bitpos >> 3]) >> (bitpos & 7)) & 1
            bitpos += 1
            low = 2 * low
            high = 2 * high + 1
            current = 2 * current + bit
            max_bit += 1
        if status != _OK:
            break
        delta = high - low + 1
        first, last = 0, cdfs.shape[1] - 1
        found = -1
        new_low, new_high = low, high
        while first <= last:
            mid = (first + last) // 2
            range_low = np.int64(0) if mid == 0 else cdfs[i, mid - 1]
            range_high = cdfs[i, mid] - 1
            candidate_low = low + ((range_low * delta + total - 1) >> TOTAL_RANGE_BITS)
            candidate_high = low + ((range_high * delta) >> TOTAL_RANGE_BITS)
            if current >= candidate_low:
                if current <= candidate_high:
                    found, new_low, new_high = mid, candidate_low, candidate_high
                    break
                first = mid + 1
            else:
                last = mid - 1
        if found < 0:
            status = _SEARCH_FAILED
            break
        symbols[i] = found
        low, high = new_low, new_high
        while max_bit >= 0:
            bit = low >> max_bit
            if bit != high >> max_bit:
                break
            low -= bit << max_bit
            high -= bit << max_bit
            current -= bit << max_bit
            max_bit -= 1
    state[0], state[1], state[2], state[3], state[4] = low, high, current, max_bit, bitpos
    return status


class ArithmeticEncoder:
    """Codes symbols, each with its own quantized CDF, into bytes; ``finish`` returns them."""

    def __init__(self) -> None:
        self._state = np.array([0, 0, -1], dtype=np.int64)  # low, high, max_bit
        self._out = np.zeros(1024, dtype=np.uint8)
        self._nbits = 0

    def push(self, symbols: Union[np.ndarray, torch.Tensor, list[int]], cdfs: np.ndarray) -> None:
        """Code ``symbols`` [n], symbol i with the quantized CDF ``cdfs[i]`` ([n, N], from ``quantized_cdfs``)."""
        symbols = np.ascontiguousarray(np.asarray(symbols, dtype=np.int64).reshape(-1))
        cdfs = np.ascontiguousarray(cdfs, dtype=np.int64).reshape(symbols.shape[0], -1)
        # Each symbol emits at most 63 bits (the range never exceeds 2^63).
        self._reserve(self._nbits + 64 * (symbols.shape[0] + 1))
        self._nbits, status = _encode_kernel(symbols, cdfs, self._state, self._out, self._nbits)
        if status != _OK:
            raise ArithmeticCodingError(_MESSAGES[status])

    def finish(self) -> bytes:
        """Emit the low end of the final range and pad the last byte with zero bits."""
        low, _, max_bit = (int(v) for v in self._state)
        self._reserve(self._nbits + max_bit + 2)
        for bit_index in range(max_bit, -1, -1):
            if (low >> bit_index) & 1:
                self._out[self._nbits >> 3] |= np.uint8(1 << (self._nbits & 7))
            self._nbits += 1
        self._state[2] = -1
        return self._out[: (self._nbits + 7) // 8].tobytes()

    def _reserve(self, bits: int) -> None:
        if bits > 8 * self._out.shape[0]:
            grown = np.zeros(max(2 * self._out.shape[0], bits // 8 + 1), dtype=np.uint8)
            grown[: self._out.shape[0]] = self._out
            self._out = grown


class ArithmeticDecoder:
    """Reads symbols back from ``data``, given the same CDFs in the same order as the encoder."""

    def __init__(self, data: Union[bytes, bytearray, memoryview, np.ndarray]) -> None:
        self._data = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        self._state = np.array([0, 0, 0, -1, 0], dtype=np.int64)  # low, high, current, max_bit, bit position

    def pull(self, cdfs: np.ndarray) -> np.ndarray:
        """Decode one symbol per row of ``cdfs`` [n, N]; ArithmeticCodingError when the data does not allow it."""
        cdfs = np.ascontiguousarray(cdfs, dtype=np.int64)
        cdfs = cdfs.reshape(-1, cdfs.shape[-1])
        symbols = np.empty(cdfs.shape[0], dtype=np.int64)
        status = _decode_kernel(cdfs, self._data, self._state, symbols)
        if status != _OK:
            raise ArithmeticCodingError(_MESSAGES[status])
        return symbols

    @property
    def bits_left(self) -> int:
        """Bits of ``data`` not read yet: the most the rest of the stream can use."""
        return 8 * self._data.shape[0] - int(self._state[4])

    def max_symbols_left(self, cardinality: int) -> int:
        """The most symbols the bits left can still decode to: ``max_symbols`` from the decoder's present state (its
        range is ``high - low + 1`` wide, so it needs ``24 - log2(width)`` bits before the next symbol)."""
        width = int(self._state[1]) - int(self._state[0]) + 1
        spare = self.bits_left + math.log2(width) - TOTAL_RANGE_BITS
        return 0 if spare < 0 else 2 + math.floor(spare / min_bits_per_symbol(cardinality))

    @property
    def bytes_read(self) -> int:
        """Bytes consumed so far (whole bytes, like the reference's byte-wise reader): where the next stream starts."""
        return (int(self._state[4]) + 7) // 8
