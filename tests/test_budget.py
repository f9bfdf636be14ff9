from __future__ import annotations

import pytest

from micromix.budget import (
    Budget,
    check_feasible,
    get_target,
    list_targets,
    parse_bytes,
    smallest_footprint,
)
from micromix.errors import InfeasibleBudgetError, MicromixError
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.policy import Policy


@pytest.mark.parametrize(
    "text, value",
    [
        ("512kB", 512_000),
        ("512KiB", 524_288),
        ("2MB", 2_000_000),
        ("1MiB", 1_048_576),
        ("1000", 1000),
        (77, 77),
        ("1.5kB", 1500),
    ],
)
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["12 parsecs", "", "-5", "0", "1.5", "kB"])
def test_parse_bytes_rejects(text):
    with pytest.raises(MicromixError):
        parse_bytes(text)


def test_targets_registry():
    names = [t.name for t in list_targets()]
    assert "stm32h743" in names and "nrf52840" in names
    t = get_target("STM32H743")
    assert (t.flash, t.ram) == (2 * 1024**2, 512 * 1024)
    with pytest.raises(MicromixError, match="known targets"):
        get_target("esp8266")


def test_budget_ratio_and_target(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    ref = memory_report(g, Policy.uniform(g, 8))
    b = Budget.parse("0.5x", "0.42x", reference=ref)
    assert b.flash == int(0.5 * ref.flash_bytes) and b.ram == int(0.42 * ref.ram_bytes)
    assert not b.fits(ref)
    t = Budget.parse(ram="100kB", target="stm32f412")
    f412 = get_target("stm32f412")
    assert t == Budget(1024**2 - f412.reserve_flash, 100_000, "stm32f412")
    with pytest.raises(MicromixError, match="reference"):
        Budget.parse("0.5x")
    assert Budget.from_json(b.to_json()) == b


def test_infeasible_names_smallest_footprint(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    low = smallest_footprint(g)
    check_feasible(g, Budget(low.flash_bytes, low.ram_bytes))  # exactly the minimum fits
    with pytest.raises(InfeasibleBudgetError) as e:
        check_feasible(g, Budget(low.flash_bytes - 1, None))
    assert f"{low.flash_bytes:,} B" in str(e.value) and f"{low.ram_bytes:,} B" in str(e.value)


def test_utilization(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    r = memory_report(g, Policy.uniform(g, 8))
    u = Budget(2 * r.flash_bytes, None).utilization(r)
    assert u == {"flash": 0.5, "ram": None}


def _wide(n_in: tuple[int, int]) -> tuple:
    """A linear layer over a whole 1 x H x W image: fan-in H * W."""
    import torch.nn as nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(n_in[0] * n_in[1], 2)).eval()
    return model, trace(model, (1, 1, *n_in))


def test_weight_bits_caps_are_exactly_what_the_conversion_accepts():
    """Fan-in 70,000 over 8-bit pixels: the worst case of 8-bit weights (70,000 x 128 x 255)
    passes 2^31, that of 4-bit ones does not. The conversion, given those worst-case weights,
    refuses exactly the bits the cap excludes: the one bound serves both."""
    import numpy as np

    from micromix.budget import weight_bits_caps
    from micromix.errors import OverflowError32
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.numerics.params import LayerQuant, QuantParams

    _, g = _wide((250, 280))
    (layer,) = [o.name for o in g.weight_ops]
    assert weight_bits_caps(g) == {layer: 4}
    for bits in (2, 4, 8):
        pol = Policy.uniform(g, bits, 8)
        qp = random_qparams(g, pol)
        lq = qp.layers[layer]
        worst = np.full_like(lq.w_int, -(2 ** (bits - 1)))
        layers = {layer: LayerQuant(layer, bits, worst, np.abs(lq.w_scale), np.zeros(2))}
        qp = QuantParams(qp.tensors, layers)
        if bits <= 4:
            convert(qp, g, pol)
        else:
            with pytest.raises(OverflowError32):
                convert(qp, g, pol)


def test_a_layer_that_overflows_at_two_bits_is_refused_before_anything_trains():
    _, g = _wide((2000, 2150))  # 4.3M products per output: over 2^31 / (2 x 255)
    with pytest.raises(MicromixError, match="overflow even with 2-bit weights"):
        check_feasible(g, Budget())


def test_a_layer_larger_than_the_kernels_take_is_refused_before_training():
    """mm_conv_dims holds int16 sizes: a layer with 32,768 outputs is refused by the check that
    runs before the search (check_feasible), not by the C export at the end; 32,767 passes."""
    import pytest
    import torch.nn as nn

    from micromix.budget import Budget, check_feasible
    from micromix.errors import MicromixError
    from micromix.graph import trace

    def head(outputs: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(1), nn.Linear(4, outputs))

    check_feasible(trace(head(2**15 - 1), (1, 4, 1, 1)), Budget())
    with pytest.raises(MicromixError, match="dimension above 32767"):
        check_feasible(trace(head(2**15), (1, 4, 1, 1)), Budget())


def test_feasibility_counts_the_schedules_ram():
    """A RAM budget only a schedule meets at 2 bits is feasible under it, not layer by layer."""
    from micromix.models import create
    from micromix.schedule import Scheduling

    g = trace(create("mobilenet_v1", width=0.1, resolution=16, in_channels=1, num_classes=10))
    layer, auto = smallest_footprint(g), smallest_footprint(g, Scheduling())
    assert auto.ram_bytes < layer.ram_bytes
    budget = Budget(None, auto.ram_bytes)
    check_feasible(g, budget, Scheduling())
    with pytest.raises(InfeasibleBudgetError, match="even 2 bits"):
        check_feasible(g, budget)
    with pytest.raises(InfeasibleBudgetError, match="even 2 bits"):
        check_feasible(g, Budget(None, auto.ram_bytes - 1), Scheduling())
