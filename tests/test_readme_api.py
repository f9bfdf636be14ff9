"""The README's Python API block, run verbatim on a model defined here (outside the zoo).

Only the settings line is replaced (a tiny synthetic .npz dataset, 2 episodes, 1 QAT epoch, a
temporary run directory), and `from my_net import MyNet` finds the MyNet below.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import require_tool

import micromix as mm

README = Path(__file__).resolve().parents[1] / "README.md"
SETTINGS = 'DATASET, EPISODES, QAT_EPOCHS, RUN_DIR = "fashion_mnist", 60, 3, "runs/api"'


class MyNet(nn.Module):
    """A small CNN with a residual add; nothing from the zoo."""

    def __init__(self, classes: int = 3, c: int = 16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        )
        self.dw = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.pw(self.dw(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def readme_api_block() -> str:
    text = README.read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_block_runs_on_a_user_model(tmp_path, monkeypatch):
    require_tool("gcc", "make", "nm", "size")  # the README block builds C
    block = readme_api_block()
    assert block.count(SETTINGS) == 1, "the README's settings line changed; update SETTINGS"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    x = rng.integers(0, 80, (200, 1, 28, 28), dtype=np.uint8)
    for i, k in enumerate(y):  # synthetic: a bright band whose position is the class
        x[i, :, 9 * k : 9 * k + 9] += 150
    npz = tmp_path / "synthetic.npz"
    np.savez(npz, x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    run_dir = tmp_path / "api"
    block = block.replace(
        SETTINGS, f'DATASET, EPISODES, QAT_EPOCHS, RUN_DIR = "{npz}", 2, 1, "{run_dir}"'
    )
    monkeypatch.setitem(sys.modules, "my_net", types.SimpleNamespace(MyNet=MyNet))
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    # The block produced a checked C export and a model file that rebuilds MyNet.
    assert mm.files.read_json(run_dir / "c" / "export.json")["checked"] is True
    model = scope["model"]
    with pytest.raises(mm.MicromixError, match="names code to run"):
        mm.load_model(run_dir / "model.pt")  # the file's spec alone never picks the code
    loaded, _ = mm.load_model(run_dir / "model.pt", named=mm.models.spec_of(model))
    assert type(loaded).__name__ == "MyNet" and loaded is not model
    assert mm.models.spec_of(loaded).input_shape == (1, 28, 28)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded.eval()(x), model.eval()(x))
    assert scope["result"].report.flash_bytes <= scope["budget"].flash
