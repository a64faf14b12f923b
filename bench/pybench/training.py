"""Training steps (forward, backward, optimizer step) with gradients on
(benches/training.rs)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .harness import BATCH, case, linear_policy

SIZES = (64, 4096)
RANK, ALPHA, LEARNING_RATE = 8, 16.0, 1e-3


@case
def lora_by_hand(bench):
    """A hand-written LoRA on a frozen Linear: `base(x) + (x A^T B^T) * alpha / r`, mean
    squared error, SGD on A and B only."""
    for size in SIZES:
        base = nn.Linear(size, size).requires_grad_(False)
        a = nn.Parameter(torch.randn(RANK, size) * 0.01)
        b = nn.Parameter(torch.zeros(size, RANK))
        opt = torch.optim.SGD([a, b], lr=LEARNING_RATE)
        x, target = torch.randn(BATCH, size), torch.randn(BATCH, size)
        scale = ALPHA / RANK

        def step():
            opt.zero_grad()
            ys = base(x) + (x @ a.T @ b.T) * scale
            F.mse_loss(ys, target).backward()
            opt.step()

        bench.run(f"lora_{size}", "by_hand", linear_policy(size), step)


class LoraLinear(nn.Linear):
    """The `__class__`-swap LoRA patch: the frozen parent's forward plus the update."""

    def forward(self, input):
        return super().forward(input) + (input @ self.lora_a.T @ self.lora_b.T) * self.scaling


@case
def lora_patched(bench):
    """The hand-written LoRA as a patch: the Linear's class swapped to `LoraLinear`, its
    weight and bias frozen, `lora_a` and `lora_b` added to it, SGD on those two only."""
    for size in SIZES:
        module = nn.Linear(size, size).requires_grad_(False)
        module.lora_a = nn.Parameter(torch.randn(RANK, size) * 0.01)
        module.lora_b = nn.Parameter(torch.zeros(size, RANK))
        module.scaling = ALPHA / RANK
        module.__class__ = LoraLinear
        opt = torch.optim.SGD([module.lora_a, module.lora_b], lr=LEARNING_RATE)
        x, target = torch.randn(BATCH, size), torch.randn(BATCH, size)

        def step():
            opt.zero_grad()
            F.mse_loss(module(x), target).backward()
            opt.step()

        bench.run(f"lora_{size}", "patched", linear_policy(size), step)
