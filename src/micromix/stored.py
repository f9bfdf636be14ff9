"""What a run directory or a checkpoint holds as data, read without building a model.

Run directories and checkpoints travel (a colleague's search, CI artifacts, a model from an
issue thread), so everything read from them is data: a model spec inside is never imported or
called on its own authority (`models.spec.authorize`), a path inside is never followed, and a
file of a received run directory is read only when it resolves inside that directory (a
symbolic link to elsewhere is refused). What the data-only commands need is stored as plain
data by the commands that write it:

- `graph.json` (every command that traces writes it; model files and QAT checkpoints embed the
  same JSON): `report` and `memory --run-dir` need nothing else besides policy.json;
- the QAT checkpoint's `integer` entry (Graph + QuantParams): `export --run-dir`.

Run directories written before these files existed still work for zoo models (a registry name
builds no foreign code); for other models the command names the code and how to run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CheckpointError, MicromixError
from .files import load_checkpoint, read_json, write_json
from .graph import Graph, WeightScales, graph_from_json, trace
from .integer import IntegerModel, convert
from .numerics.params import qparams_from_data
from .policy import Policy
from .quant.finetune import QAT_KIND, load_qat
from .schedule import Scheduling

GRAPH_FILE = "graph.json"
# Where each command keeps its checkpoints (`micromix run` in stage folders).
MODEL_FILES = ("model.pt", "float/model.pt")
QAT_FILES = ("qat.pt", "finetune/qat.pt")


def inside(run_dir: str | Path, name: str) -> Path:
    """`run_dir/name`, refused when it resolves outside `run_dir` (a link to elsewhere)."""
    d = Path(run_dir)
    p = d / name
    if p.is_symlink() or p.exists():
        if not p.resolve().is_relative_to(d.resolve()):
            raise MicromixError(
                f"{p} points outside the run directory {d}; micromix follows no path read "
                "from a run directory."
            )
    return p


def first_file(run_dir: str | Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        p = inside(run_dir, name)
        if p.is_file():
            return p
    return None


def write_graph(run_dir: str | Path, graph: Graph) -> None:
    write_json(Path(run_dir) / GRAPH_FILE, graph.to_json())


def graph_of_file(path: str | Path) -> Graph | None:
    """The Graph a model file or QAT checkpoint embeds, or None when it has none."""
    ck = load_checkpoint(path)
    data = ck.get("graph")
    if data is None and isinstance(ck.get("integer"), dict):
        data = ck["integer"].get("graph")
    return None if data is None else graph_from_json(data, f"the graph in {path}")


def graph_of_run_dir(run_dir: str | Path) -> Graph:
    """The Graph a run directory recorded, from data: graph.json, else the graph embedded in
    its QAT checkpoint or model file, else (older run directories) a zoo model rebuilt from
    its recorded spec. A spec that names code is refused, naming the code."""
    d = Path(run_dir)
    p = first_file(d, (GRAPH_FILE,))
    if p is not None:
        return graph_from_json(read_json(p), str(p))
    for p in filter(None, (first_file(d, QAT_FILES), first_file(d, MODEL_FILES))):
        graph = graph_of_file(p)
        if graph is not None:
            return graph
    scales = WeightScales(dense=recorded_setting(d, "dense_scales") or "channel")
    return trace(_recorded_zoo_model(d), scales=scales)


def _recorded_zoo_model(d: Path) -> Any:
    from .models import ModelSpec, authorize, build, create_from_config

    spec = None
    for p in filter(None, (first_file(d, QAT_FILES), first_file(d, MODEL_FILES))):
        ck = load_checkpoint(p)
        spec = ck.get("model_spec")
        if spec:
            break
        if ck.get("model_config"):  # a zoo model's registry name and options
            return create_from_config(ck["model_config"])
    cfg = first_file(d, ("config.json",))
    if not spec and cfg is not None:
        spec = (read_json(cfg, expect=dict).get("settings") or {}).get("model_spec")
    if not spec:
        raise MicromixError(f"{d} records no model (no graph.json, model file or model spec).")
    return build(authorize(ModelSpec.from_json(spec), None, f"{d}'s model spec"))


def recorded_setting(run_dir: str | Path, key: str) -> Any:
    """settings[key] of run_dir/config.json (None when absent)."""
    cfg = first_file(run_dir, ("config.json",))
    if cfg is None:
        return None
    return (read_json(cfg, expect=dict).get("settings") or {}).get(key)


def recorded_scheduling(run_dir: str | Path) -> Scheduling | None:
    """The schedule config.json recorded (`run`: flat settings; `search`: its identity's
    object), checked like a command line's; None when it records none."""
    value = recorded_setting(run_dir, "schedule")
    if value is None:
        return None
    if isinstance(value, dict):
        return Scheduling.from_json(value)
    cap = recorded_setting(run_dir, "max_recompute")
    return Scheduling(value, Scheduling().max_recompute if cap is None else cap)


# Settings whose value can name code or a path; the others are numbers and registry names,
# which their own checks validate.
_FLAGS = {
    "model": "--model",
    "checkpoint": "--checkpoint",
    "dataset": "--dataset",
    "data_dir": "--data-dir",
    "target": "--target",
}


def names_code_or_path(key: str, value: Any) -> bool:
    """Whether a recorded setting `key: value` names code or a path (and so must come from the
    command line): a model outside the zoo, any checkpoint or data folder, a dataset other
    than the built-in one, a target file."""
    from .data import dataset_source
    from .models import list_models

    if value is None or key not in _FLAGS:
        return False
    if key == "model":
        return value not in list_models()
    if key == "dataset":
        try:
            return dataset_source(value).is_path
        except MicromixError:
            return True
    if key == "target":
        return str(value).lower().endswith((".toml", ".json"))
    return True


def refuse_recorded(key: str, value: Any, source: str | Path) -> MicromixError:
    return MicromixError(
        f"{source} records {_FLAGS[key]} {value}, and micromix runs no code and follows no path "
        f"read from a run directory; give {_FLAGS[key]} {value} on the command line to use it."
    )


def load_integer(path: str | Path, scheduling: Scheduling | None = None) -> IntegerModel:
    """The IntegerModel of a QAT checkpoint from its stored data: no model is built and no
    code is imported. `scheduling`: the schedule its report, reference and C follow (None:
    layer by layer, `convert`'s default). A QAT checkpoint written before that data was stored is rebuilt, for a
    zoo model only (`load_qat` refuses a spec that names code). Damaged data, or a file that is
    no QAT checkpoint, is a CheckpointError."""
    sched = {} if scheduling is None else scheduling.to_json()
    ck = load_checkpoint(path)
    data = ck.get("integer") if ck.get("kind") == QAT_KIND else None
    if data is None and ck.get("kind") == QAT_KIND:
        return convert(load_qat(path)[0], **sched)
    if not isinstance(data, dict) or "policy" not in ck:
        raise CheckpointError(
            f"{path} holds no integer model data (not a QAT checkpoint, or its data is "
            "damaged); run `micromix finetune` again to write it."
        )
    graph = graph_from_json(data.get("graph"), f"the graph in {path}")
    policy = Policy.from_json(ck["policy"], source=f"the policy in {path}")
    try:
        return convert(qparams_from_data(data["quant_params"]), graph, policy, **sched)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise CheckpointError(
            f"the integer model data in {path} is damaged ({type(e).__name__}: {str(e)[:80]})."
        ) from None
