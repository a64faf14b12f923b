"""Patching cost against parameter size, 1 KiB to 1 GiB: `__class__` swaps and
`copy.deepcopy` (benches/patch_cost.rs)."""

import copy

import torch
import torch.nn as nn

from . import blog
from .harness import case

DIM = 256
SIZES = [1 << 10, 1 << 15, 1 << 20, 1 << 25, 1 << 30]
#: Sizes above this are left out of `--quick` runs (as of `cargo test` runs on the Rust side).
QUICK_LIMIT = 1 << 25


class Tagged(nn.Embedding):
    """A field-less patch: only the class changes."""


def label(size):
    if size >= 1 << 30:
        return f"{size >> 30}GiB"
    if size >= 1 << 20:
        return f"{size >> 20}MiB"
    return f"{size >> 10}KiB"


def table(size):
    dim = min(DIM, size // 4)
    embedding = nn.Embedding(size // 4 // dim, dim, _weight=torch.zeros(size // 4 // dim, dim))
    return embedding


def copy_policy(size):
    if size >= 1 << 30:
        return "huge"
    if size >= 1 << 25:
        return "slow"
    return "fast"


@case
def patching_cost(bench):
    for size in SIZES:
        if bench.quick and size > QUICK_LIMIT:
            continue
        module = table(size)
        group = f"patch_cost_{label(size)}"

        def fieldless():
            module.__class__ = Tagged
            module.__class__ = nn.Embedding

        def mostly_frozen_embedding():
            blog.unpatch(blog.MostlyFrozenEmbedding.from_existing(module, [0]))

        bench.run(group, "fieldless", "fast", fieldless)
        bench.run(group, "mostly_frozen_embedding", "fast", mostly_frozen_embedding)
        bench.run(group, "copy", copy_policy(size), lambda: copy.deepcopy(module))
        del module
