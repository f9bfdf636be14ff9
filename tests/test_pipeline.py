"""`micromix run` end to end on a very small configuration, resume, and its error paths."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import require_tool

from micromix.cli import main
from micromix.errors import MicromixError
from micromix.files import read_json
from micromix.pipeline import PRESETS, RunConfig, run_pipeline
from micromix.policy import Policy
from micromix.schedule import Scheduling
from micromix.stored import graph_of_run_dir

TINY = RunConfig(
    episodes=2,
    warmup=1,
    search_train_images=128,
    search_eval_images=128,
    rescore_epochs=1,
    rescore_train_images=256,
    rescore_images=200,
    finetune_epochs=1,
    finetune_batches=3,
    eval_images=200,
    export_images=20,
    export_target="host",
)

# The module's run scales its dense layer per tensor (as TFLite's int8 files do): every stage
# must then trace, search, fine-tune and export it so; the channel default runs elsewhere.
RUN = replace(TINY, dense_scales="tensor")

TRACES: list[str] = []  # the models the module's run traced


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fashion):
    import micromix.graph

    require_tool("gcc", "make", "nm", "size")  # the export stage builds and checks the C
    d = tmp_path_factory.mktemp("run")
    real = micromix.graph._Fuser.run

    def counted(self):
        TRACES.append(type(self.gm).__name__)
        return real(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(micromix.graph._Fuser, "run", counted)
        run_pipeline(d, RUN, progress=False)
    return d


def test_a_run_traces_its_model_once(run_dir):
    """Validation traces the model and hands the Graph to every stage (budget, search, QAT,
    the model file): one trace per run."""
    assert len(TRACES) == 1, TRACES


def test_every_stage_done_and_consistent(run_dir):
    stages = read_json(run_dir / "stages.json")
    assert list(stages) == ["float", "budget", "search", "finetune", "integer", "export", "report"]
    budget = read_json(run_dir / "budget.json")
    mem = read_json(run_dir / "memory.json")
    assert mem["flash_bytes"] <= budget["flash"] and mem["ram_bytes"] <= budget["ram"]
    assert budget["flash"] == int(0.48 * budget["reference_8bit"]["flash"])
    e = stages["export"]
    # The object file holds exactly what the memory model promised.
    assert (
        e["const data in the object file (B)"] == mem["flash_bytes"] == e["memory model FLASH (B)"]
    )
    assert e["arena + scratch in the object file (B)"] == mem["ram_bytes"]
    assert mem["ram_bytes"] == mem["arena_bytes"] + mem["scratch_bytes"]
    assert e["self-test images bit-identical"] == "20 / 20"
    assert stages["integer"]["agreement"] >= 95.0
    cfg = read_json(run_dir / "config.json")
    assert cfg["settings"]["episodes"] == 2 and "torch" in cfg["versions"]
    # the budget, memory.json and the C all count the default schedule's RAM
    assert (cfg["settings"]["schedule"], cfg["settings"]["max_recompute"]) == ("auto", 0.1)
    graph, policy = graph_of_run_dir(run_dir), Policy.load(run_dir / "policy.json")
    assert mem["ram_bytes"] == Scheduling().report(graph, policy).ram_bytes


def test_resume_refuses_another_schedule(run_dir):
    with pytest.raises(MicromixError, match="schedule"):
        run_pipeline(run_dir, replace(RUN, schedule="layer"), resume=True, progress=False)
    with pytest.raises(MicromixError, match="max_recompute"):
        run_pipeline(run_dir, replace(RUN, max_recompute=0.2), resume=True, progress=False)


def test_a_tensor_run_records_its_scales_and_exports_the_per_tensor_kernel(run_dir):
    """--dense-scales tensor reaches every stage: config.json, the stored graph, the QAT
    checkpoint (its reload traces per tensor) and the C, which runs the layer with
    mm_dense_pt (the export's self-test, checked above, ran it bit-exact)."""
    from micromix.graph import scales_of
    from micromix.quant.finetune import load_qat

    assert read_json(run_dir / "config.json")["settings"]["dense_scales"] == "tensor"
    dense = [o for o in graph_of_run_dir(run_dir).ops if o.has_weight and len(o.weight.shape) == 2]
    assert dense and all(o.per_tensor for o in dense)
    assert scales_of(load_qat(run_dir / "finetune" / "qat.pt")[0].graph).dense == "tensor"
    assert "mm_dense_pt(" in (run_dir / "c" / "lib" / "micromix_model.c").read_text()


def test_resume_keeps_the_recorded_dense_scales_and_refuses_others(run_dir, capsys):
    from micromix.cli import build_parser
    from micromix.cli.cmd_run import config_from_args

    argv = ["run", "--run-dir", str(run_dir), "--resume"]
    assert config_from_args(build_parser().parse_args(argv)).dense_scales == "tensor"
    with pytest.raises(MicromixError, match="dense_scales"):
        run_pipeline(run_dir, replace(RUN, dense_scales="channel"), resume=True, progress=False)
    assert main([*argv, "--dense-scales", "channel", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'dense_scales was "tensor", now "channel"' in err


def test_report_rendered_and_rerendered(run_dir, capsys):
    text = (run_dir / "report.md").read_text()
    assert "## Accuracy" in text and "## Memory" in text and "## C export" in text
    assert (run_dir / "policy.png").stat().st_size > 1000
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "## Memory" in (run_dir / "report.md").read_text()
    assert "report:" in capsys.readouterr().out


def test_resume_skips_finished_stages(run_dir):
    model_mtime = (run_dir / "float" / "model.pt").stat().st_mtime_ns
    stages = read_json(run_dir / "stages.json")
    for s in ("export", "report"):  # as if the run had been killed during the export
        stages.pop(s)
    (run_dir / "stages.json").write_text(json.dumps(stages))
    run_pipeline(run_dir, RUN, resume=True, progress=False)
    again = read_json(run_dir / "stages.json")
    assert "export" in again and again["search"] == stages["search"]
    assert (run_dir / "float" / "model.pt").stat().st_mtime_ns == model_mtime


def test_presets():
    assert PRESETS["paper"].episodes == 600 and PRESETS["paper"].finetune_epochs == 10
    assert (PRESETS["quick"].flash, PRESETS["quick"].ram) == ("0.48x", "0.42x")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["run", "--preset", "huge"], "unknown preset"),
        (["run", "--flash", "1kB", "--ram", "1kB"], "even 2 bits everywhere need FLASH"),
        (["run", "--model", "resnet9"], "unknown model"),
        (["run", "--schedule", "fastest"], "choose auto, layer, inplace, patch"),
        (["run", "--max-recompute", "-1"], "fraction of 0 or more"),
        (["run", "--dense-scales", "row"], "--dense-scales: choose channel, tensor, not 'row'"),
    ],
)
def test_run_errors_one_line(argv, needle, tmp_path, capsys, fashion):
    assert main([*argv, "--run-dir", str(tmp_path / "r"), "--quiet", "--eval-images", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


DEAD_NET = '''
import torch.nn as nn


class Dead(nn.Module):
    """Its logits are a ReLU of a strongly negative number: at chance whatever it trains."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 28)
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, -100.0)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x)).flatten(1)
'''


def test_run_stops_a_model_at_chance_after_its_first_float_epoch(
    tmp_path, capsys, monkeypatch, fashion
):
    """Issue 25: `micromix run` spent 20 float epochs, a search and QAT on a model at chance.
    Now it stops after epoch 1, before the search, with one sentence naming the fix."""
    from dataclasses import replace

    import micromix.pipeline as pipeline_mod
    from micromix.train import CHANCE_MIN_STEPS

    real = pipeline_mod.float_recipe
    # as short an epoch as the check judges: what matters is the first epoch's figures
    monkeypatch.setattr(
        pipeline_mod,
        "float_recipe",
        lambda *a, **k: replace(real(*a, **k), max_batches=CHANCE_MIN_STEPS),
    )
    (tmp_path / "dead.py").write_text(DEAD_NET)
    argv = ["run", "--model", f"{tmp_path / 'dead.py'}:Dead", "--input-shape", "1x28x28"]
    argv += ["--float-epochs", "3", "--ram", "1x", "--run-dir", str(tmp_path / "r"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "at chance after epoch 1" in err and "--lr" in err and "--checkpoint" in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r" / "search").exists()
