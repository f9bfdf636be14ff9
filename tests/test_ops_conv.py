"""ops.conv's weight layouts: the field-major rows of mm_pointwise_sub's two-pixel path."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.numerics.arith import pack_bits
from micromix.ops.conv import field_major


@settings(max_examples=60, deadline=None)
@given(
    wb=st.sampled_from([2, 4]),
    cout=st.integers(1, 9),
    cin=st.integers(8, 70),
    seed=st.integers(0, 2**31 - 1),
)
def test_field_major_puts_element_4f_plus_j_in_field_f_of_byte_j(wb, cout, cin, seed) -> None:
    """Element by element (a slow oracle): within the word of element e < head (head = the
    whole words of 32 / wb elements), byte j = i % 4 and field f = i // 4 hold it (i = e % g);
    elements from head on follow in natural order. Every field read back signed."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-(2 ** (wb - 1)), 2 ** (wb - 1), (cout, cin))
    iop = SimpleNamespace(
        w_bits=wb,
        op=SimpleNamespace(in_shape=(cin, 3, 3), out_shape=(cout, 3, 3)),
        weight_matrix=lambda: w.reshape(cout, 1, 1, cin),
    )
    rows = field_major(iop)
    g, per = 32 // wb, 8 // wb
    head = cin - cin % g
    assert rows.shape == pack_bits(w, wb, signed=True).shape
    for r in range(cout):
        for e in range(cin):
            if e < head:
                i = e % g
                byte, field = 4 * (e // g) + i % 4, i // 4
            else:
                byte, field = (head + (e - head)) // per, (e - head) % per
            v = (int(rows[r, byte]) >> (field * wb)) & ((1 << wb) - 1)
            assert v - ((v >> (wb - 1)) << wb) == w[r, e], (r, e)
