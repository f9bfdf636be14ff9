"""Checks of settings against the model and the data, made before any stage runs (each a
MicromixError of one sentence): shared by the commands and `micromix run`'s validation."""

from __future__ import annotations

from .errors import MicromixError


def model_classes(graph) -> int:
    """Outputs of the model's last op: the number of classes its head tells apart."""
    n = 1
    for d in graph.ops[-1].out_shape:
        n *= int(d)
    return n


def check_classes(data, graph) -> None:
    """An image set with more classes than the model's head cannot be trained or scored."""
    k, n = len(data.classes), model_classes(graph)
    if k > n:
        raise MicromixError(
            f"the dataset has {k} classes but the model's head has {n} outputs; use a model "
            f"built for {k} classes (--classes {k})."
        )


def check_batches(n_images: int, batch_size: int, what: str = "training images") -> None:
    """Training drops the last partial batch: fewer images than a batch would train nothing."""
    if n_images < batch_size:
        raise MicromixError(
            f"--batch-size {batch_size} is larger than the {n_images} {what}, so no batch "
            "would be trained; lower --batch-size or use more images."
        )
