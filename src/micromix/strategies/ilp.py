"""The `ilp` strategy: per-tensor sensitivities, then an exact integer program over the bits.

Sensitivity of a tensor at b bits = the increase of the cross-entropy on a calibration subset
of the TRAIN split when only that tensor is quantized to b bits and everything else stays
float. Measuring it through `quant.prepare` (one fake-quant model per tensor and bit) would
cost a deep copy, a calibration and a forward per entry; instead one fx copy of the float
model gets a switchable quantizer probe after every activation tensor, and weights are
quantized in place and restored. So each entry costs exactly one forward pass over the
calibration images (about 5 s for MobileNetV1-0.25 on 1,024 images). The probes are the QAT
quantizers of `quant/` themselves (`WeightQuant` with its MSE clip per channel, `ActQuant`
with the clip of least mean squared error standing in for PACT's learned clip). Without data (a synthetic evaluator) the sensitivities are measured by
the evaluator instead: accuracy lost when one tensor is at b bits and all others at 8.

The program: one binary per (tensor, bits), exactly one per tensor; minimise the summed
sensitivity; FLASH is linear in the choices (weight_bytes per choice plus the fixed parameter
bytes); one RAM row per execution step (bytes of the tensors live there, from the schedule's
size table `schedule.search_table`, its constant buffers included). The arena is then checked
with the schedule's exact report (`Scheduling.report`); if the planner (or the schedule chosen
for the policy) exceeds the rows' estimate, the RAM rows are tightened by the excess and the
program is solved again.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import Bounds, LinearConstraint, milp

from ..budget import Budget
from ..data import ImageSet, batches
from ..errors import InfeasibleBudgetError
from ..graph import Graph
from ..memory import SizeTable, scratch_bytes, size_table
from ..policy import ALLOWED_BITS, Policy
from ..quant.fakequant import ActQuant, WeightQuant
from ..schedule import LAYER, Scheduling
from .evaluate import Evaluator

Key = tuple[str, str, int]  # ("w", op name, bits) or ("a", tensor name, bits)
LOW_BITS = tuple(b for b in ALLOWED_BITS if b < 8)
# A key's tag -> the Policy field that holds its bits.
POLICY_FIELD = {"w": "weights", "a": "activations"}


def choice_keys(graph: Graph, weights_only: bool = False) -> list[tuple[str, str]]:
    """The decision variables: every weight op, and every activation except input and logits
    unless `weights_only`."""
    fixed = (graph.input, graph.output)
    acts = [] if weights_only else [("a", t) for t in graph.tensors if t not in fixed]
    return [("w", o.name) for o in graph.weight_ops] + acts


def policy_of(base: Policy, chosen: dict[tuple[str, str], int]) -> Policy:
    """`base` with the bits of `chosen` ((tag, name) -> bits) set."""
    changes: dict[str, dict[str, int]] = {field: {} for field in POLICY_FIELD.values()}
    for (tag, name), b in chosen.items():
        changes[POLICY_FIELD[tag]][name] = b
    return base.replace(**changes)


# ---- sensitivities ------------------------------------------------------------------------


class _Probe(nn.Module):
    """Identity, or the QAT activation quantizer of one tensor when `bits` is set."""

    def __init__(self, signed: bool) -> None:
        super().__init__()
        self.signed, self.bits, self.clip, self.record = signed, None, 1.0, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.record is not None:
            self.record.append(x.detach())
        return x if self.bits is None else act_quant(x, self.bits, self.clip, self.signed)


def act_quant(x: torch.Tensor, bits: int, clip: float, signed: bool) -> torch.Tensor:
    """`quant.fakequant.ActQuant` at a fixed clip (the forward QAT and the export use)."""
    q = ActQuant(bits, signed, init=clip, learn=False).to(x.device)  # buffers on x's device
    with torch.no_grad():
        return q(x)


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """`quant.fakequant.WeightQuant` per output channel with its MSE-chosen clip."""
    q = WeightQuant(bits, w.shape[0]).to(w.device)  # its clip buffer on w's device (CUDA)
    with torch.no_grad():
        q.init_mse(w)
        return q(w)


def _probed(model: nn.Module, graph: Graph) -> tuple[torch.fx.GraphModule, dict[str, _Probe]]:
    gm = torch.fx.symbolic_trace(model)
    nodes = {n.name: n for n in gm.graph.nodes}
    probes: dict[str, _Probe] = {}
    for name, t in graph.tensors.items():
        if name in (graph.input, graph.output):
            continue
        probe = _Probe(t.signed)
        attr = f"_mm_probe_{len(probes)}"
        gm.add_module(attr, probe)
        node = nodes[t.fx_node]
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(attr, (node,))
        node.replace_all_uses_with(new, delete_user_cb=lambda u, new=new: u is not new)
        probes[name] = probe
    gm.recompile()
    return gm.eval(), probes


SENSITIVITY_BATCH = 256


@torch.no_grad()
def measure_sensitivity(
    model: nn.Module, graph: Graph, calib: ImageSet, *, batch_size: int = SENSITIVITY_BATCH
) -> dict[Key, float]:
    """Loss increase per (tensor, bits) on `calib` (see the module docstring)."""
    gm, probes = _probed(model, graph)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    data = list(batches(calib, batch_size, device=device))

    def loss() -> float:
        return sum(F.cross_entropy(gm(x), y, reduction="sum").item() for x, y in data) / len(calib)

    # Record each tensor on one batch to pick the MSE-best clip per bit-width.
    for p in probes.values():
        p.record = []
    gm(data[0][0])
    clips: dict[tuple[str, int], float] = {}
    for name, p in probes.items():
        x = p.record[0]
        p.record = None
        top = float(x.abs().max()) or 1.0
        for b in LOW_BITS + (8,):
            cands = [top * f for f in (1.0, 0.8, 0.6, 0.45, 0.3, 0.2)]
            errs = [float((act_quant(x, b, c, p.signed) - x).pow(2).mean()) for c in cands]
            clips[name, b] = cands[int(np.argmin(errs))]
    base = loss()
    sens: dict[Key, float] = {}
    modules = dict(model.named_modules())
    for op in graph.weight_ops:
        w = modules[op.weight.module].weight
        keep = w.detach().clone()
        for b in LOW_BITS:
            w.copy_(quantize_weight(keep, b))
            sens["w", op.name, b] = max(0.0, loss() - base)
        w.copy_(keep)
    for name, p in probes.items():
        for b in LOW_BITS:
            p.bits, p.clip = b, clips[name, b]
            sens["a", name, b] = max(0.0, loss() - base)
        p.bits = None
    return sens


def evaluator_sensitivity(graph: Graph, evaluate: Evaluator) -> dict[Key, float]:
    """Accuracy points lost with one tensor at b bits and all others at 8 (slow with QAT)."""
    base_policy = Policy.uniform(graph, 8)
    base = evaluate(base_policy)
    sens: dict[Key, float] = {}
    for key in choice_keys(graph):
        for b in LOW_BITS:
            sens[(*key, b)] = max(0.0, base - evaluate(policy_of(base_policy, {key: b})))
    return sens


# ---- the integer program ------------------------------------------------------------------


def solve_ilp(
    graph: Graph,
    budget: Budget,
    sens: dict[Key, float],
    *,
    max_rounds: int = 20,
    sizes: SizeTable | None = None,
    weights_only: bool = False,
    scheduling: Scheduling = LAYER,
) -> Policy:
    """The policy of least summed sensitivity whose FLASH and planned arena (under
    `scheduling`'s schedule) fit `budget`.

    `weights_only`: activations are not decision variables (they stay at 8 bits). The RAM rows
    add up the schedule's size table (schedule.search_table), exact at 8 bits; below 8 bits a
    schedule can change (an in-place op whose input and output bits differ writes apart), so
    when the planned arena keeps overshooting until the rows admit no policy, it solves again
    with the layer-by-layer table, which is never below the scheduled arena's tensors.
    """
    args = (graph, budget, sens, max_rounds, weights_only, scheduling)
    try:
        return _solve(*args, sizes or scheduling.sizes(graph))
    except InfeasibleBudgetError:
        if scheduling.schedule == "layer":
            raise
        return _solve(*args, size_table(graph))


def _solve(
    graph: Graph,
    budget: Budget,
    sens: dict[Key, float],
    max_rounds: int,
    weights_only: bool,
    scheduling: Scheduling,
    sizes: SizeTable,
) -> Policy:
    eight = dict.fromkeys(sizes.act, 8)
    keys = choice_keys(graph, weights_only)
    bits = ALLOWED_BITS
    var = {(k, n, b): i for i, (k, n, b) in enumerate((k, n, b) for k, n in keys for b in bits)}
    nv = len(var)
    # A vanishing bonus for more bits breaks ties between equally sensitive choices upwards.
    cost = np.zeros(nv)
    for (k, n, b), i in var.items():
        cost[i] = sens.get((k, n, b), 0.0) - 1e-9 * b
    rows, lo, hi = [], [], []
    for k, n in keys:  # exactly one bit-width per tensor
        r = np.zeros(nv)
        r[[var[k, n, b] for b in bits]] = 1
        rows.append(r), lo.append(1), hi.append(1)
    if budget.flash is not None:
        r = np.zeros(nv)
        for o in graph.weight_ops:
            for b in bits:
                r[var["w", o.name, b]] = sizes.weight[o.name][b]
        fixed = sizes.params
        for t, table in sizes.act_flash.items():  # lut tables: 2^bits bytes of their input
            if ("a", t, 8) in var:
                for b in bits:
                    r[var["a", t, b]] += table[b]
            else:
                fixed += table[8]
        rows.append(r), lo.append(0), hi.append(budget.flash - fixed)
    ram_rows = []
    if budget.ram is not None:
        for s in range(len(graph.ops)):
            # the step's bytes no searched tensor sizes (a schedule's staging buffers)
            const = sizes.live_at(eight, s) - sum(sizes.act[t][8] for t in sizes.live[s])
            r = np.zeros(nv)
            for t in sizes.live[s]:
                if ("a", t, 8) in var:
                    for b in bits:
                        r[var["a", t, b]] = sizes.act[t][b]
                else:
                    const += sizes.act[t][8]
            ram_rows.append((r, const))
    # The rows bound the live tensors; the kernels' scratch (set by the weight bits) takes its
    # share first, at its largest over the allowed bits, and the loop below re-checks the plan.
    ram_limit = None
    if budget.ram is not None:
        ram_limit = budget.ram - max(
            scratch_bytes(graph, {o.name: b for o in graph.weight_ops}) for b in bits
        )
    for _ in range(max_rounds):
        A = rows + [r for r, _ in ram_rows]
        ub = hi + [ram_limit - c for _, c in ram_rows]
        lb = lo + [0] * len(ram_rows)
        res = milp(
            cost,
            constraints=LinearConstraint(np.array(A), lb, ub) if A else None,
            integrality=np.ones(nv),
            bounds=Bounds(0, 1),
        )
        if res.status != 0 or res.x is None:
            raise InfeasibleBudgetError(
                f"the ILP finds no policy within the budget (FLASH {budget.flash}, RAM {ram_limit} B)."
            )
        x = np.round(res.x).astype(int)
        chosen = {(k, n): b for (k, n, b), i in var.items() if x[i]}
        pol = policy_of(Policy.uniform(graph, 8), chosen)
        report = scheduling.report(graph, pol)
        if budget.fits(report):
            return pol
        if budget.ram is None or report.ram_bytes <= budget.ram:
            break
        ram_limit -= report.ram_bytes - budget.ram  # the planner overshot: tighten the rows
    raise InfeasibleBudgetError(
        "the ILP could not find a policy whose planned arena fits the RAM budget."
    )


def gains_from(sens: dict[Key, float]) -> dict[Key, float]:
    """The action wall's fill gains: the sensitivity saved by doubling from b bits."""
    out: dict[Key, float] = {}
    for (kind, name, b), v in sens.items():
        up = 0.0 if 2 * b == max(ALLOWED_BITS) else sens.get((kind, name, 2 * b), 0.0)
        out[kind, name, b] = max(0.0, v - up)
    return out


def policy_cost(policy: Policy, graph: Graph, sens: dict[Key, float]) -> float:
    """The ILP objective of a policy (for checks against brute force)."""
    total = sum(sens.get(("w", n, b), 0.0) for n, b in policy.weights.items())
    return total + sum(sens.get(("a", n, b), 0.0) for n, b in policy.activations.items())
