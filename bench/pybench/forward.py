"""Forward of `__class__`-swapped modules against the same computation by hand, under
`no_grad` (benches/forward.rs)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import blog
from .harness import BATCH, case, linear_policy

LINEAR_SIZES = (64, 4096)
VOCAB, DIM, TRAINABLE, TOKENS = 32768, 256, 16, (32, 64)


class Passthrough(nn.Linear):
    """A delegating patch: a subclass that keeps the parent's forward."""


class Gained(nn.Linear):
    """A custom-forward patch: the parent's output times a per-feature gain."""

    def forward(self, input):
        return super().forward(input) * self.gain


@case
def linear_delegating(bench):
    with torch.no_grad():
        for size in LINEAR_SIZES:
            module = nn.Linear(size, size)
            w, b = module.weight, module.bias
            x = torch.randn(BATCH, size)
            group, policy = f"linear_{size}_delegating", linear_policy(size)
            bench.run(group, "by_hand", policy, lambda: F.linear(x, w, b))
            bench.run(group, "parent", policy, lambda: module(x))
            module.__class__ = Passthrough
            bench.run(group, "patched", policy, lambda: module(x))


@case
def linear_custom(bench):
    with torch.no_grad():
        for size in LINEAR_SIZES:
            module = nn.Linear(size, size)
            module.gain = nn.Parameter(torch.randn(size))
            module.__class__ = Gained
            w, b, gain = module.weight, module.bias, module.gain
            x = torch.randn(BATCH, size)
            group, policy = f"linear_{size}_custom", linear_policy(size)
            bench.run(group, "by_hand", policy, lambda: F.linear(x, w, b) * gain)
            bench.run(group, "patched", policy, lambda: module(x))


def token_ids():
    """The Rust side's ids: `(i * 7919) % VOCAB`, and trainable rows 0, 2048, 4096, ..."""
    x = (torch.arange(TOKENS[0] * TOKENS[1]) * 7919).remainder(VOCAB).reshape(TOKENS)
    return x, [i * (VOCAB // TRAINABLE) for i in range(TRAINABLE)]


@case
def embedding_onehot(bench):
    with torch.no_grad():
        x, ids = token_ids()
        module = blog.OneHotMostlyFrozenEmbedding.from_existing(nn.Embedding(VOCAB, DIM), ids)
        w, delta, ids = module.weight, module.delta, module.token_ids

        def by_hand():
            hits = (x.unsqueeze(-1) == ids).to(torch.float32)
            return F.embedding(x, w) + hits @ delta

        bench.run("embedding_onehot", "by_hand", "fast", by_hand)
        bench.run("embedding_onehot", "patched", "fast", lambda: module(x))


@case
def embedding_scatter_add(bench):
    with torch.no_grad():
        x, ids = token_ids()
        module = blog.MostlyFrozenEmbedding.from_existing(nn.Embedding(VOCAB, DIM), ids)
        w, delta, index = module.weight, module.delta, module.trainable_token_ids

        def by_hand():
            return F.embedding(x, torch.scatter_add(w, 0, index, delta))

        bench.run("embedding_scatter_add", "by_hand", "slow", by_hand)
        bench.run("embedding_scatter_add", "patched", "slow", lambda: module(x))


class Injected(nn.Module):
    """PEFT's adapter injection without an adapter: a wrapper module that replaces the
    parent's attribute and calls the wrapped layer (`base_layer`)."""

    def __init__(self, base_layer):
        super().__init__()
        self.base_layer = base_layer

    def forward(self, x):
        return self.base_layer(x)


@case
def slot_dispatch(bench):
    """Rust's slot cases: `by_hand` the functional op, `slot` the Linear as a submodule
    attribute (`parent.fc(x)`), `patched` that attribute replaced by an injected wrapper."""
    with torch.no_grad():
        for size in LINEAR_SIZES:
            parent = nn.Module()
            parent.fc = nn.Linear(size, size)
            w, b = parent.fc.weight, parent.fc.bias
            x = torch.randn(BATCH, size)
            group, policy = f"slot_dispatch_{size}", linear_policy(size)
            bench.run(group, "by_hand", policy, lambda: F.linear(x, w, b))
            bench.run(group, "slot", policy, lambda: parent.fc(x))
            parent.fc = Injected(parent.fc)
            bench.run(group, "patched", policy, lambda: parent.fc(x))
