"""The action wall: the MLSys 2020 memory-driven rules that make any proposal fit the budget.

Weights and activations are independent here (FLASH depends only on weight bits, RAM only on
activation bits), so the two rules run separately and only ever lower bits.

RAM (activations). The MLSys 2020 rule works on the tensors live at each step: for a chain
that is the layer's input and output. On residual graphs a skip tensor kept alive across a step
is live there too ("bystander"). At a step whose live bytes exceed the budget the wall picks,
among the cuttable live tensors (not the input image or the logits, not already at 2 bits), the
one with the most bits (tie: the most bytes) and halves it, but only if the sweep may cut it:
a forward sweep may cut the op's output, a backward sweep its inputs, and either may cut a
bystander (a skip tensor touches steps on both sides, so neither sweep direction owns it).
Otherwise the step is left to the sweep going the other way. Sweeps alternate until every step
fits. Every violating step always has a pick that one of the two directions may cut, so each
forward+backward pair makes progress and the loop ends.

The arena planner may exceed the liveness bound on residual nets, so afterwards the planned
arena (the report's ram_bytes, what the device allocates) is checked and the largest tensor
of the peak step is halved until the arena fits.

Schedule: RAM is measured under a `schedule.Scheduling` (default layer by layer). The sweeps
add up its size table (`schedule.search_table`: the buffers of the schedule picked at 8 bits,
patch-sized stage tensors and staging buffers included). Checks (the arena check, every
raise of `fill`) first ask `Scheduling.bound`: the layer, in-place and 8-bit patch schedules of
that policy, never below the exact figure, so what passes fits; only when it does not is the
exact report asked (`Scheduling.report`: every split and grid under the recompute cap), so
bits are cut only while no schedule under the cap fits.

Accumulators: a layer's weights never get more bits than `budget.weight_bits_caps` allows (its
int32 accumulator could overflow above them for some input); enforce lowers them first, and the
upward passes stop there.

FLASH (weights): while over budget, among layers not at 2 bits take those whose share of the
current weight bytes is within 5 percentage points of the largest share, and halve the
earliest one.

Upward pass (`fill`): a policy that fits may still leave budget unused (the rules above only
lower bits; a low proposal is never repaired). `fill` doubles, one at a time, the tensor whose
next bit-width gains most per extra byte of its budget (FLASH for weights, RAM for
activations) among those that still fit, until none fits. The gain of b -> 2b bits is the
sensitivity drop when one is known (the ILP's), else a fixed proxy (2 -> 4 worth 4x 4 -> 8).
Doublings are coarse, so `fill_exchange` (what the strategies use) goes on while FLASH is under
98 % used: raise one more weight tensor and halve others by best fit (see its docstring).
"""

from __future__ import annotations

from ..budget import Budget, check_feasible, weight_bits_caps
from ..errors import InfeasibleBudgetError
from ..graph import Graph
from ..memory import MemoryReport, SizeTable, scratch_need
from ..policy import ALLOWED_BITS, FIXED_BITS, Policy
from ..schedule import LAYER, Scheduling

MIN_BITS = min(ALLOWED_BITS)
MAX_BITS = max(ALLOWED_BITS)
SHARE_WINDOW = 0.05  # the 5 percentage points of the FLASH rule
PROXY_GAIN = {2: 1.0, 4: 0.25}  # gain of doubling from these bits when no sensitivity is known
FILL_TARGET = 0.98  # FLASH share the exchange pass aims at (issue 13's goal)
EXCHANGE_ROUNDS = 8
REPORT_CACHE = 4096  # memory reports a wall keeps
Gains = dict[tuple[str, str, int], float]  # ("w"|"a", name, from bits) -> gain of doubling


class Wall:
    """Size tables of one graph and budget; `enforce(policy)` returns a fitting policy."""

    def __init__(
        self,
        graph: Graph,
        budget: Budget,
        *,
        sizes: SizeTable | None = None,
        weights_only: bool = False,
        scheduling: Scheduling = LAYER,
    ) -> None:
        # raises InfeasibleBudgetError naming the 2-bit minimum
        check_feasible(graph, budget, scheduling)
        self.graph, self.budget, self.weights_only = graph, budget, weights_only
        self.scheduling = scheduling
        self.hint = scheduling.patch_hint(graph)  # the patch stage trial checks try
        self._reports: dict[tuple, MemoryReport] = {}
        self.fixed = frozenset((graph.input, graph.output))
        # A layer whose int32 accumulator could overflow above these bits never gets them.
        self.wmax = weight_bits_caps(graph)
        # Byte tables come from memory.py; the wall only adds them up.
        self.sizes = sizes or scheduling.sizes(graph)
        self.act_bytes, self.w_bytes = self.sizes.act, self.sizes.weight
        self.param_bytes = self.sizes.params
        self.live = self.sizes.live
        self.scratch = {
            o.name: {b: scratch_need(o, b) for b in ALLOWED_BITS} if o.has_weight else None
            for o in graph.ops
        }
        self.scratch_fixed = max(
            [scratch_need(o, None) for o in graph.ops if not o.has_weight], default=0
        )
        self.log: list[tuple[str, str, int]] = []  # (rule, tensor, new bits) of the last call

    # ---- sizes -------------------------------------------------------------------------------

    def live_bytes(self, acts: dict[str, int], step: int) -> int:
        return self.sizes.live_at(acts, step)

    def report(self, policy: Policy, exact: bool = True) -> MemoryReport:
        """The report under the schedule; `exact=False`: `Scheduling.bound`'s, whose RAM is
        never below it, for trial checks (`auto` plans every split and grid, 50-odd drafts).
        Cached: the searches meet the same policies again."""
        key = (exact, policy.key())
        if key not in self._reports:
            if len(self._reports) >= REPORT_CACHE:  # a long haq run: keep memory bounded
                self._reports.clear()
            s = self.scheduling
            rep = s.report(self.graph, policy) if exact else s.bound(self.graph, policy, self.hint)
            self._reports[key] = rep
        return self._reports[key]

    def checked(self, policy: Policy) -> MemoryReport:
        """The bound's report when it fits the budget, else the exact one (which may)."""
        report = self.report(policy, exact=False)
        return report if self.budget.fits(report) else self.report(policy)

    def peak_tensors(self, report: MemoryReport) -> list[str]:
        """The activation tensors live at the report's peak step."""
        m = report.schedule
        if m is None:
            live = [x.live_bytes for x in report.layers]
            return list(self.live[max(range(len(live)), key=live.__getitem__)])
        step = max(m.steps, key=lambda s: sum(b for _, b in s.buffers)).step
        return [
            t
            for t, (first, last) in m.member_live.items()
            if first <= step <= last and t in self.graph.tensors
        ]

    def flash_bytes(self, weights: dict[str, int], acts: dict[str, int] | None = None) -> int:
        """Exactly memory_report's FLASH (lut tables at `acts`' bits; None: at 8 bits)."""
        return self.sizes.flash(weights, acts)

    def cuttable(self, acts: dict[str, int], names) -> list[str]:
        if self.weights_only:  # activations stay at 8 bits: nothing to cut
            return []
        return [t for t in names if t not in self.fixed and acts[t] > MIN_BITS]

    def scratch_bytes(self, weights: dict[str, int]) -> int:
        """memory.scratch_bytes from the table (same rounding: a multiple of 4, at least 4)."""
        need = max(
            self.scratch_fixed,
            max(t[weights[o]] for o, t in self.scratch.items() if t is not None),
        )
        return max(4, (need + 3) // 4 * 4)

    # ---- rules -------------------------------------------------------------------------------

    def enforce(self, policy: Policy) -> tuple[Policy, MemoryReport]:
        """Lower bits of `policy` until it fits; returns it with its memory report."""
        self.log = []
        weights = dict(policy.weights)
        for o, cap in self.wmax.items():
            if weights[o] > cap:
                weights[o] = cap
                self.log.append(("accumulator", o, cap))
        weights = self.fit_flash(weights, policy.activations)
        acts = self.fit_ram(dict(policy.activations), weights)
        out = Policy(weights, acts)
        out, report = self.fit_arena(out)
        if not self.budget.fits(report):  # cannot happen after check_feasible; never hand it out
            raise InfeasibleBudgetError(
                f"the action wall could not fit the policy into the budget ({self.budget.describe(report)})."
            )
        return out, report

    def fit_flash(
        self, weights: dict[str, int], acts: dict[str, int] | None = None
    ) -> dict[str, int]:
        limit = self.budget.flash
        acts = None if acts is None or self.weights_only else acts  # weight-only: 8-bit tables
        if limit is None:
            return weights
        order = [o.name for o in self.graph.weight_ops]
        while self.flash_bytes(weights, acts) > limit:
            cands = [o for o in order if weights[o] > MIN_BITS]
            if not cands:
                raise InfeasibleBudgetError(
                    f"FLASH budget {limit:,} B cannot be met even with 2-bit weights."
                )
            total = sum(self.w_bytes[o][weights[o]] for o in order)
            share = {o: self.w_bytes[o][weights[o]] / total for o in cands}
            top = max(share.values())
            # The small tolerance keeps float rounding from breaking an exact 5-point tie.
            pick = next(o for o in cands if share[o] >= top - SHARE_WINDOW - 1e-12)
            weights[pick] //= 2
            self.log.append(("flash", pick, weights[pick]))
        return weights

    def fit_ram(self, acts: dict[str, int], weights: dict[str, int]) -> dict[str, int]:
        if self.budget.ram is None:
            return acts
        # The kernels' scratch buffer shares the RAM budget; the weight bits fix its size.
        limit = self.budget.ram - self.scratch_bytes(weights)
        for t in self.fixed:
            acts[t] = FIXED_BITS
        n = len(self.graph.ops)
        forward, idle = True, 0
        while any(self.live_bytes(acts, s) > limit for s in range(n)):
            changed = False
            for s in range(n) if forward else range(n - 1, -1, -1):
                while self.live_bytes(acts, s) > limit:
                    t = self.pick(acts, s, forward)
                    if t is None:
                        break
                    acts[t] //= 2
                    changed = True
                    self.log.append(("ram-fwd" if forward else "ram-bwd", t, acts[t]))
            idle = 0 if changed else idle + 1
            if idle >= 2:  # a forward and a backward sweep without a cut: nothing can move
                least = (
                    "8-bit activations (weight-only)" if self.weights_only else "2-bit activations"
                )
                raise InfeasibleBudgetError(
                    f"RAM budget {limit:,} B cannot be met even with {least}."
                )
            forward = not forward
        return acts

    def pick(self, acts: dict[str, int], step: int, forward: bool) -> str | None:
        """The tensor the rule halves at `step`, or None when this sweep may not cut it."""
        op = self.graph.ops[step]
        cands = self.cuttable(acts, self.live[step])
        if not cands:
            return None
        own = {op.output} if forward else set(op.inputs)
        bystanders = set(self.live[step]) - {op.output} - set(op.inputs)
        allowed = own | bystanders
        # Most bits, then most bytes; a remaining tie goes to a tensor this sweep may cut.
        best = max(
            cands, key=lambda t: (acts[t], self.act_bytes[t][acts[t]], t in allowed, -len(t))
        )
        return best if best in allowed else None

    def fit_arena(self, policy: Policy) -> tuple[Policy, MemoryReport]:
        """Cut until the planned arena, not just the liveness bound, fits: a cut only when the
        exact report (every schedule under the cap) does not."""
        report = self.checked(policy)
        limit = self.budget.ram
        if limit is None:
            return policy, report
        acts = dict(policy.activations)
        while report.ram_bytes > limit:
            cands = self.cuttable(acts, self.peak_tensors(report)) or self.cuttable(acts, acts)
            if not cands:
                raise InfeasibleBudgetError(
                    f"RAM budget {limit:,} B cannot be met: the arena needs {report.ram_bytes:,} B at 2 bits."
                )
            t = max(cands, key=lambda t: (self.act_bytes[t][acts[t]], acts[t]))
            acts[t] //= 2
            self.log.append(("arena", t, acts[t]))
            policy = Policy(policy.weights, acts)
            report = self.checked(policy)
        return policy, report

    # ---- upward pass ---------------------------------------------------------------------------

    def fill(
        self, policy: Policy, gains: Gains | None = None, frozen: frozenset = frozenset()
    ) -> tuple[Policy, MemoryReport]:
        """Raise bits while the budgets allow, best gain per byte first (module docstring).
        `frozen`: ("w"|"a", name) pairs that keep their bits."""
        weights, acts = dict(policy.weights), dict(policy.activations)
        flash_lim, ram_lim = self.budget.flash, self.budget.ram

        def gain(kind: str, name: str, b: int) -> float:
            g = PROXY_GAIN[b] if gains is None else gains.get((kind, name, b), 0.0)
            return max(g, 1e-9)  # a free tensor still beats leaving the budget unused

        live_of = {t: [s for s, names in enumerate(self.live) if t in names] for t in acts}
        blocked: set[tuple[str, str]] = set(frozen)
        while True:
            flash = self.flash_bytes(weights, acts)
            scratch = self.scratch_bytes(weights) if ram_lim is not None else 0
            best, best_score = None, 0.0
            for o, b in weights.items():
                if b >= self.wmax[o] or ("w", o) in blocked:
                    continue
                extra = self.w_bytes[o][2 * b] - self.w_bytes[o][b]
                if flash_lim is not None and flash + extra > flash_lim:
                    continue
                if ram_lim is not None:
                    trial = {**weights, o: 2 * b}
                    grow = self.scratch_bytes(trial) - scratch
                    if grow > 0 and self.sizes.live_peak(acts) + scratch + grow > ram_lim:
                        continue
                score = gain("w", o, b) / max(extra, 1)
                if score > best_score:
                    best, best_score = (("w", o), weights), score
            if not self.weights_only and ram_lim is not None:
                for t, b in acts.items():
                    if t in self.fixed or b >= MAX_BITS or ("a", t) in blocked:
                        continue
                    extra = self.act_bytes[t][2 * b] - self.act_bytes[t][b]
                    table = self.sizes.act_flash.get(t)  # lut tables grow with their input
                    if (
                        table is not None
                        and flash_lim is not None
                        and flash + table[2 * b] - table[b] > flash_lim
                    ):
                        continue
                    if any(self.live_at(acts, s) + extra + scratch > ram_lim for s in live_of[t]):
                        continue
                    score = gain("a", t, b) / max(extra, 1)
                    if score > best_score:
                        best, best_score = (("a", t), acts), score
            if best is None:
                break
            # the raised tensor's key and the table (weights or acts) that holds its bits
            key, table = best
            name = key[1]
            table[name] *= 2
            moved = table is acts or (
                ram_lim is not None and self.scratch_bytes(weights) != scratch
            )
            if moved:  # the arena plan may have changed: check it, not the bound
                report = self.checked(Policy(weights, acts))
                if not self.budget.fits(report):  # the planned arena overshot the bound
                    table[name] //= 2
                    blocked.add(key)
                    continue
            self.log.append(("fill", name, table[name]))
        out = Policy(weights, acts)
        return out, self.checked(out)

    def live_at(self, acts: dict[str, int], step: int) -> int:
        return self.live_bytes(acts, step)

    def fill_exchange(
        self, policy: Policy, gains: Gains | None = None, target: float = FILL_TARGET
    ) -> tuple[Policy, MemoryReport]:
        """`fill`, then exchanges while FLASH is used below `target`. Bits move in doublings, so
        the last raise often does not fit (rule at FLASH 0.75x: 96.1 %, 6.9 kB short of a
        16 kB step). A trial raises one weight tensor anyway and repairs FLASH by best fit:
        halve the tensor that frees the fewest bytes still covering the deficit, or, when none
        does, the one that frees the most (least gain lost on a tie); then fill around it. Of
        the trials that use more FLASH and fit, one that reaches `target` is preferred, then the
        most summed gain (the fill's gains), then the most bytes. FLASH used grows every round,
        so the loop ends."""
        best, report = self.fill(policy, gains)
        limit = self.budget.flash
        if limit is None:
            return best, report
        for _ in range(EXCHANGE_ROUNDS):
            if report.flash_bytes >= target * limit:
                break
            trials = []
            for t, b in best.weights.items():
                if b >= self.wmax[t]:
                    continue
                q = self._raise_and_repair(best, t, gains)
                if q is None:
                    continue
                q, rep = self.fill(q, gains, frozenset(("w", o) for o in q.weights))
                if rep.flash_bytes > report.flash_bytes and self.budget.fits(rep):
                    hit = rep.flash_bytes >= target * limit
                    trials.append(((hit, self.value(q, gains), rep.flash_bytes), q, rep))
            if not trials:
                break
            _, best, report = max(trials, key=lambda x: x[0])
            best, report = self.fill(best, gains)
        return best, report

    def _raise_and_repair(self, policy: Policy, t: str, gains: Gains | None) -> Policy | None:
        weights = dict(policy.weights)
        weights[t] *= 2
        limit = self.budget.flash
        touched = {t}
        acts = dict(policy.activations)
        while self.flash_bytes(weights, acts) > limit:
            deficit = self.flash_bytes(weights, acts) - limit
            cands = []
            for o, b in weights.items():
                if o in touched or b <= MIN_BITS:
                    continue
                freed = self.w_bytes[o][b] - self.w_bytes[o][b // 2]
                lost = PROXY_GAIN[b // 2] if gains is None else gains.get(("w", o, b // 2), 0.0)
                cands.append((freed, lost, o))
            if not cands:
                return None
            cover = [c for c in cands if c[0] >= deficit]
            freed, _, o = (
                min(cover, key=lambda c: (c[0], c[1]))
                if cover
                else max(cands, key=lambda c: (c[0], -c[1]))
            )
            weights[o] //= 2
            touched.add(o)
        return Policy(weights, dict(policy.activations))

    def value(self, policy: Policy, gains: Gains | None = None) -> float:
        """The summed gains of every doubling a policy's bits contain (what the fill maximises)."""

        def up(kind: str, name: str, bits: int) -> float:
            return sum(
                PROXY_GAIN[b] if gains is None else gains.get((kind, name, b), 0.0)
                for b in PROXY_GAIN
                if b < bits
            )

        total = sum(up("w", o, b) for o, b in policy.weights.items())
        return total + sum(
            up("a", t, b) for t, b in policy.activations.items() if t not in self.fixed
        )


def rule_policy(
    graph: Graph, budget: Budget, *, weights_only: bool = False, scheduling: Scheduling = LAYER
) -> Policy:
    """The MLSys 2020 procedure alone: all 8 bits, then the wall."""
    wall = Wall(graph, budget, weights_only=weights_only, scheduling=scheduling)
    return wall.enforce(Policy.uniform(graph, 8))[0]
