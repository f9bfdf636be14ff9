"""configs: every settings object refuses a bad setting in one sentence when it is built (so
before any stage runs, from the API, a stored file or the CLI), and round-trips through JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from micromix.configs import check_int, check_number
from micromix.errors import MicromixError
from micromix.quant.finetune import FinetuneConfig
from micromix.strategies import QATSettings, SearchConfig
from micromix.train import FitRun, TrainConfig

# Each config: settings other than its defaults, and bad settings with a word of the refusal.
CASES = {
    TrainConfig: (
        {"epochs": 4, "optimizer": "adam", "schedule": "step", "lr_steps": ((2, 0.5),)},
        [
            ("batch_size", 0, "batch_size"),
            ("epochs", 2.5, "epochs"),
            ("optimizer", "rmsprop", "optimizer"),
            ("schedule", "linear", "schedule"),
            ("lr", 0.0, "learning rate"),
            ("lr", math.nan, "learning rate"),
            ("max_batches", 0, "max_batches"),
            ("kd_weight", 1.5, "kd_weight"),
        ],
    ),
    FitRun: (
        {"device": torch.device("cpu"), "checkpoint": Path("runs/x/ck.pt"), "until_epoch": 2},
        [("until_epoch", 0, "until_epoch")],
    ),
    FinetuneConfig: (
        {"epochs": 2, "batch_size": 32, "seed": 5, "weight_range": "full", "checkpoint": "ck.pt"},
        [
            ("weight_range", "wide", "weight_range"),
            ("calib_batches", 0, "calib_batches"),
            ("batch_size", True, "batch_size"),
            ("epochs", -1, "epochs"),
        ],
    ),
    QATSettings: (
        {"train_images": 64, "eval_images": 32, "repeats": 2, "user_batch_size": 16},
        [
            ("train_images", 0, "--train-images"),
            ("eval_images", "all", "--eval-images"),
            ("repeats", 1.5, "repeats"),
            ("recipe", "x", "recipe"),
            ("final_recipe", "nope", "final_recipe"),
            ("screen_margin", -1.0, "screen_margin"),
        ],
    ),
    SearchConfig: (
        {"run_dir": Path("runs/s"), "seed": 3, "qat": QATSettings(train_images=64), "workers": 2},
        [
            ("workers", 0, "--workers"),
            ("stop_after", 0, "stop_after"),
            ("seed", -1, "seed"),
            ("qat", "fast", "QAT"),
        ],
    ),
}


def one_sentence(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".") and "Traceback" not in msg, msg
    return msg


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_a_config_round_trips_through_json(cls) -> None:
    good, _ = CASES[cls]
    config = cls(**good)
    assert config != cls()  # the case sets something, so the round trip has something to keep
    text = json.dumps(config.to_json())  # plain JSON: a Path or torch.device is stored as text
    assert cls.from_json(json.loads(text)) == config


@pytest.mark.parametrize(
    "cls, name, value, word",
    [(cls, *bad) for cls, (_, bads) in CASES.items() for bad in bads],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_a_bad_setting_is_refused_in_one_sentence_when_built_or_loaded(cls, name, value, word):
    good, _ = CASES[cls]
    with pytest.raises(MicromixError) as e:
        cls(**{**good, name: value})
    assert word in one_sentence(e)
    # a stored file edited by hand is refused the same way
    stored = {**json.loads(json.dumps(cls(**good).to_json())), name: value}
    with pytest.raises(MicromixError) as e:
        cls.from_json(stored)
    assert word in one_sentence(e)


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_a_stored_config_with_an_unknown_setting_or_no_object_is_refused(cls) -> None:
    with pytest.raises(MicromixError, match="unknown setting 'episodez'") as e:
        cls.from_json({**cls().to_json(), "episodez": 3})
    one_sentence(e)
    with pytest.raises(MicromixError, match="JSON object") as e:
        cls.from_json([1, 2])
    one_sentence(e)


@pytest.mark.parametrize("value", [0, 1, 7, -3, True, False, 2.0, "3", None])
def test_check_int_accepts_exactly_the_integers_at_or_above_the_least(value) -> None:
    ok = type(value) is int and value >= 1
    if ok:
        check_int("n", value, 1)
    else:
        with pytest.raises(MicromixError, match="n must be an integer of at least 1"):
            check_int("n", value, 1)
    check_int("n", None, 1, optional=True)  # None is "not set" where the setting is optional


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0, 1.5, -0.1, math.inf, math.nan, True, "1"])
def test_check_number_accepts_exactly_the_finite_reals_in_range(value) -> None:
    ok = type(value) is float and math.isfinite(value) and 0.0 <= value <= 1.0
    if ok:
        check_number("w", value, 0.0, 1.0)
    else:
        with pytest.raises(MicromixError, match=r"w must be a number in \[0.0, 1.0\]"):
            check_number("w", value, 0.0, 1.0)
