"""Baselines: uniform policies, the best fitting 8-bit network, k-means codebooks and their FLASH."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_quant import image_set

from micromix.baselines import UNIFORM, best_fitting_8bit, grid_8bit, uniform_policies
from micromix.budget import Budget
from micromix.cli import main
from micromix.errors import InfeasibleBudgetError, MicromixError
from micromix.graph import trace
from micromix.memory import memory_report, param_bytes, weight_bytes
from micromix.models import create
from micromix.policy import Policy
from micromix.quant.kmeans import kmeans_1d, kmeans_flash_bytes, kmeans_quantize
from micromix.train import save_model


def test_uniform_policies(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    pols = uniform_policies(g)
    assert list(pols) == list(UNIFORM)
    w2a4 = pols["W2/A4"].validate(g)
    assert set(w2a4.weights.values()) == {2}
    assert w2a4.activations["conv1"] == 4 and w2a4.activations[g.output] == 8
    with pytest.raises(MicromixError, match="unknown uniform baseline 'W3/A3'"):
        uniform_policies(g, ["W3/A3"])


KW = dict(in_channels=1, num_classes=10)
WIDTHS, RES = (0.1, 0.25, 0.4), (16, 28)


def test_best_fitting_8bit_is_the_largest_that_fits():
    ref = trace(create("mobilenet_v1", width=0.25, resolution=28, **KW))
    budget = Budget.parse("0.48x", "0.42x", reference=memory_report(ref, Policy.uniform(ref, 8)))
    best = best_fitting_8bit("mobilenet_v1", budget, widths=WIDTHS, resolutions=RES, **KW)
    cfg = best["model_config"]
    g = trace(create(**cfg))
    rep = memory_report(g, Policy.uniform(g, 8))
    assert budget.fits(rep) and rep.flash_bytes == best["memory"]["flash_bytes"]
    fitting = [c for c in best["grid"] if c["fits"]]
    assert best["macs"] == max(c["macs"] for c in fitting)
    assert cfg["width"] < 0.25  # the 8-bit 0.25 net is twice the FLASH budget


def test_grid_skips_widths_over_flash():
    grid = grid_8bit("mobilenet_v1", Budget(flash=60_000), widths=WIDTHS, resolutions=RES, **KW)
    assert [(c.width, c.resolution) for c in grid] == [(0.1, 16), (0.1, 28), (0.25, 16), (0.4, 16)]


def test_best_fitting_8bit_infeasible():
    with pytest.raises(InfeasibleBudgetError, match="smallest needs FLASH") as e:
        best_fitting_8bit(
            "mobilenet_v1", Budget(flash=1000), widths=(0.1,), resolutions=(16,), **KW
        )
    assert "\n" not in str(e.value)


# ---- k-means -------------------------------------------------------------------------------


def test_kmeans_1d():
    torch.manual_seed(0)
    w = torch.randn(50, 7)
    c, idx = kmeans_1d(w, 4)
    assert c.shape == (4,) and idx.shape == w.shape and idx.max() < 4
    # Lloyd's fixed point: every weight sits at its nearest centroid, each centroid the mean
    assert torch.equal(idx, (w[..., None] - c).abs().argmin(-1))
    for j in range(4):
        assert torch.allclose(c[j], w[idx == j].mean(), atol=1e-5)


def test_kmeans_model_codebook_gradients_and_training(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    km = kmeans_quantize(tiny_resnet, 2, g, act_bits=None)
    conv = km.net.conv2
    assert not hasattr(conv, "weight") or "weight" not in dict(conv.named_parameters())
    w = conv.codebook_weight()
    assert len(w.unique()) <= 4
    # centroid gradient = sum of the gradients of the weights that share it
    x = torch.rand(3, 1, 8, 8)
    wd = w.detach().requires_grad_()
    conv.forward = lambda inp: conv._conv_forward(inp, wd, conv.bias)
    km(x).square().sum().backward()
    del conv.forward
    km.zero_grad()
    km(x).square().sum().backward()
    want = torch.zeros(4).index_add_(0, conv.index.view(-1), wd.grad.view(-1))
    assert torch.allclose(conv.centroids.grad, want, rtol=1e-5, atol=1e-7)
    # fine-tuning moves centroids, never the assignment: still <= 2^b values per layer
    index = conv.index.clone()
    opt = torch.optim.Adam(km.parameters(), lr=1e-2)
    ds = image_set(32, classes=3)
    for _ in range(3):
        loss = F.cross_entropy(km(ds.images.float() / 255), ds.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(conv.index, index) and len(conv.codebook_weight().unique()) <= 4


def test_kmeans_with_8bit_activations(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    km = kmeans_quantize(tiny_resnet, 4, g, act_bits=8)
    assert "act_quant" in km.net.code
    assert km(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_kmeans_flash_counts_indices_codebooks_params(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    f = kmeans_flash_bytes(g, 2)
    assert f["index_bytes"] == sum(weight_bytes(o, 2) for o in g.weight_ops)
    assert f["codebook_bytes"] == 4 * 4 * len(g.weight_ops)
    assert f["param_bytes"] == sum(param_bytes(o) for o in g.ops)
    assert f["flash_bytes"] == f["index_bytes"] + f["codebook_bytes"] + f["param_bytes"]
    # the same bits uniformly cost exactly the codebooks less
    uniform = memory_report(g, Policy.uniform(g, 2, 8)).flash_bytes
    assert f["flash_bytes"] - uniform == f["codebook_bytes"]
    assert kmeans_flash_bytes(g, 2, centroid_bytes=2)["codebook_bytes"] == 2 * 4 * len(g.weight_ops)


# ---- CLI -----------------------------------------------------------------------------------


def test_baseline_cli_errors(tmp_path, capsys):
    m = create("mobilenet_v1", width=0.1, resolution=16, **KW)
    save_model(tmp_path / "f.pt", m)
    for i, (argv, msg) in enumerate(
        [
            (["fit8"], "needs a budget"),
            (["fit8", "--flash", "10", "--widths", "0.1,0.2"], "smallest needs FLASH"),
            (["fit8", "--ram", "1kB", "--widths", "0.1,x"], "comma-separated list"),
            (["kmeans", "--wbits", "9"], "--wbits 1..8"),
            (["uniform", "--configs", "8/8,W1/A1"], "unknown uniform baseline 'W1/A1'"),
        ]
    ):
        rd = tmp_path / f"run{i}"
        code = main(
            ["baseline", *argv, "--checkpoint", str(tmp_path / "f.pt"), "--run-dir", str(rd)]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and msg in err and len(err.splitlines()) == 1, err
        if "--flash" not in argv:  # a bad command line writes nothing
            assert not rd.exists()


def test_each_baseline_sub_command_is_a_registry_entry():
    """`micromix baseline KIND` runs BASELINES[KIND]: the sub-commands are its keys."""
    import argparse

    from micromix.cli import cmd_baseline

    p = argparse.ArgumentParser()
    cmd_baseline.add_arguments(p)
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == set(cmd_baseline.BASELINES)
