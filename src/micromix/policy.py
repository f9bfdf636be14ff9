"""Policy: the bit-width of every weight tensor and every activation tensor of a Graph.

Configuration is data: a frozen value with a JSON round trip. Weight bits are keyed by op name
(the conv/linear module path), activation bits by tensor name (the producing op's name, or
"input" for the network input).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import PolicyError
from .graph import Graph

FORMAT_VERSION = 1
ALLOWED_BITS = (2, 4, 8)
FIXED_BITS = 8  # the raw uint8 image and the logits


@dataclass(frozen=True)
class Policy:
    weights: Mapping[str, int] = field(default_factory=dict)
    activations: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only views keep the frozen promise and make a Policy safe as a cache key.
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))
        object.__setattr__(self, "activations", MappingProxyType(dict(self.activations)))

    def __hash__(self) -> int:
        return hash(self.key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self.key() == other.key()

    def key(self) -> str:
        """Canonical string of the policy, for caching and comparing."""
        w = ",".join(f"{k}:{v}" for k, v in sorted(self.weights.items()))
        a = ",".join(f"{k}:{v}" for k, v in sorted(self.activations.items()))
        return f"w[{w}]a[{a}]"

    @classmethod
    def uniform(cls, graph: Graph, w_bits: int = 8, a_bits: int | None = None) -> Policy:
        """Same bits everywhere; the network input and the logits stay at 8 bits."""
        a_bits = w_bits if a_bits is None else a_bits
        weights = {o.name: w_bits for o in graph.weight_ops}
        acts = {
            t: (FIXED_BITS if t in (graph.input, graph.output) else a_bits) for t in graph.tensors
        }
        return cls(weights, acts)

    def replace(
        self, weights: Mapping[str, int] | None = None, activations: Mapping[str, int] | None = None
    ) -> Policy:
        """A copy with some entries changed."""
        return Policy(
            {**self.weights, **(weights or {})}, {**self.activations, **(activations or {})}
        )

    def validate(self, graph: Graph, allowed: tuple[int, ...] = ALLOWED_BITS) -> Policy:
        """Check the policy names exactly the graph's tensors with allowed bits; return self."""
        wnames = {o.name for o in graph.weight_ops}
        for kind, have, want in (
            ("weight", self.weights, wnames),
            ("activation", self.activations, set(graph.tensors)),
        ):
            unknown = sorted(set(have) - want)
            if unknown:
                raise PolicyError(
                    f"the policy names unknown {kind} tensor '{unknown[0]}' that the model does not have."
                )
            missing = sorted(want - set(have))
            if missing:
                raise PolicyError(f"the policy gives no bits for {kind} tensor '{missing[0]}'.")
            for name, b in have.items():
                if not isinstance(b, int) or isinstance(b, bool) or b not in allowed:
                    raise PolicyError(
                        f"{kind} tensor '{name}' has {repr(b)[:24]} bits; allowed are {', '.join(map(str, allowed))}."
                    )
        for t in (graph.input, graph.output):
            if self.activations[t] != FIXED_BITS:
                raise PolicyError(
                    f"tensor '{t}' must stay at {FIXED_BITS} bits (the raw image and the logits are 8-bit)."
                )
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "weights": dict(self.weights),
            "activations": dict(self.activations),
        }

    @classmethod
    def from_json(cls, obj: Any, source: str = "policy") -> Policy:
        if not isinstance(obj, dict):
            raise PolicyError(
                f"{source} is not a JSON object with 'format', 'weights' and 'activations'."
            )
        if obj.get("format") != FORMAT_VERSION:
            raise PolicyError(
                f"{source} has format version {obj.get('format')!r}; this micromix reads version {FORMAT_VERSION}."
            )
        for key in ("weights", "activations"):
            if not isinstance(obj.get(key), dict):
                raise PolicyError(f"{source} has no '{key}' object mapping tensor names to bits.")
        return cls(obj["weights"], obj["activations"])

    def save(self, path: str | os.PathLike) -> None:
        from .files import write_json

        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Policy:
        from .files import read_json

        p = Path(path)
        obj = read_json(p, what="policy file", error=PolicyError)
        return cls.from_json(obj, source=f"policy file {p}")

    def describe(self, graph: Graph) -> str:
        """One line per op: weight bits / output bits."""
        rows = []
        for o in graph.ops:
            w = self.weights.get(o.name, "-")
            rows.append(f"{o.name:<28} W{w!s:>2}  A{self.activations.get(o.output, '-')!s:>2}")
        return "\n".join(rows)
