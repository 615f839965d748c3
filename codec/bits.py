"""Codes packed at a fixed number of bits each (most significant bit first): the bitstream of every codec whose
payload is its codebook indices, so that the measured bitrate is the codes' own (codebooks x bits x frame rate)."""

from __future__ import annotations

import numpy as np


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Non-negative integer codes, flattened in C order, at ``bits`` bits each; the last byte is zero-padded."""
    flat = np.asarray(codes).reshape(-1).astype(np.uint32)
    if flat.size and int(flat.max()) >> bits:
        raise ValueError(f"a code ({int(flat.max())}) does not fit in {bits} bits")
    as_bits = ((flat[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(as_bits.reshape(-1)).tobytes()


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` codes of ``bits`` bits take."""
    return -(-count * bits // 8)


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """The first ``count`` codes of ``bits`` bits each in ``data``, as int64."""
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:count * bits].reshape(count, bits)
    return (flat.astype(np.int64) << np.arange(bits - 1, -1, -1)).sum(axis=1)
