"""The public names of `import micromix` resolve to the callables the README shows."""

from __future__ import annotations

import inspect

import pytest

import micromix as mm


@pytest.mark.parametrize(
    "name",
    [
        "trace",
        "memory_report",
        "load_model",
        "finetune",
        "search",
        "convert",
        "export_c",
        "prepare",
    ],
)
def test_public_verbs_are_functions(name):
    assert inspect.isfunction(getattr(mm, name))


def test_search_is_a_plain_function_and_strategies_a_package():
    import importlib.util

    import micromix.strategies.engine  # noqa: F401
    from micromix.strategies import QuantEnv

    assert inspect.isfunction(mm.search) and inspect.isclass(QuantEnv)
    assert mm.search is micromix.strategies.search
    assert importlib.util.find_spec("micromix.search") is None  # no module hides behind the verb
    assert inspect.isclass(mm.strategies.QuantEnv) and "haq" in mm.strategies.list_strategies()


def test_public_types_and_registries():
    assert inspect.isclass(mm.Policy) and inspect.isclass(mm.Budget)
    assert "stm32h743" in mm.targets and "mobilenet_v1" in mm.models.list_models()
    with pytest.raises(AttributeError):
        mm.no_such_name  # noqa: B018
