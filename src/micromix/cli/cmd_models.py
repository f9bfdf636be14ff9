"""`micromix models`: the model registry."""

from __future__ import annotations

import argparse

from ..models import list_models

NAME = "models"
HELP = "list the models of the zoo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for name in list_models():
        print(name)
    return 0
