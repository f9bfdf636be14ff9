"""ops.conv's weight layouts: channel_packed, the weights of the sub8 path (4- and 2-bit weights
on 8-bit inputs in mm_conv and mm_pointwise_sub)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.numerics.arith import pack_bits, packed_bytes
from micromix.ops.conv import channel_packed


def _signed(v: int, bits: int) -> int:
    return v - ((v >> (bits - 1)) << bits)


@settings(max_examples=60, deadline=None)
@given(
    wb=st.sampled_from([2, 4]),
    cout=st.integers(1, 11),
    taps=st.sampled_from([1, 9]),
    cin=st.integers(1, 21),
    seed=st.integers(0, 2**31 - 1),
)
def test_channel_packed_reads_back_every_weight(wb, cout, taps, cin, seed) -> None:
    """Element by element (a slow oracle) from the C's reading of the bytes: in block b of four
    channels, channel j's element e sits in the group word (4-bit: the pair j // 2's, 8 bytes a
    group) or in the tail bytes after the groups; the top field is two's complement, the others
    offset by 2^(bits - 1). The rows after the last block are the natural packed rows, and the
    byte count is the natural one."""
    rng = np.random.default_rng(seed)
    row = taps * cin
    w = rng.integers(-(2 ** (wb - 1)), 2 ** (wb - 1), (cout, row))
    iop = SimpleNamespace(
        w_bits=wb,
        op=SimpleNamespace(out_shape=(cout, 3, 3)),
        weight_matrix=lambda: w.reshape(cout, 1, taps, cin),
    )
    flat = channel_packed(iop)
    rb, head, t, c4 = packed_bytes(row, wb), row - row % 4, row % 4, cout - cout % 4
    assert flat.shape == (cout * rb,) and flat.dtype == np.uint8
    for b in range(0, c4, 4):
        blk = flat[b * rb : (b + 4) * rb].astype(np.int64)
        used = 2 * row if wb == 4 else row
        assert not blk[used:].any()  # the block's padding
        for j in range(4):
            for e in range(row):
                if wb == 4:
                    p = j // 2
                    i = 8 * (e // 4) + 4 * p + e % 4 if e < head else 2 * head + p * t + e - head
                    v = _signed(blk[i] >> 4, 4) if j % 2 else (blk[i] & 15) - 8
                else:
                    f = (blk[e] >> (2 * j)) & 3
                    v = _signed(f, 2) if j == 3 else f - 2
                assert v == w[b + j, e], (b, j, e)
    assert (flat[c4 * rb :] == pack_bits(w[c4:], wb, signed=True).reshape(-1)).all()
