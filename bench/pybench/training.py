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


def sgd_step(module, parameters, size):
    """One training step of `module` on a random batch: mean squared error against a random
    target, SGD on `parameters`."""
    opt = torch.optim.SGD(parameters, lr=LEARNING_RATE)
    x, target = torch.randn(BATCH, size), torch.randn(BATCH, size)

    def step():
        opt.zero_grad()
        F.mse_loss(module(x), target).backward()
        opt.step()

    return step


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
        step = sgd_step(module, [module.lora_a, module.lora_b], size)
        bench.run(f"lora_{size}", "patched", linear_policy(size), step)


@case
def dora_by_hand(bench):
    """DoRA written out as PEFT 0.21 computes it: `base(x) + (s - 1) (base(x) - bias) +
    s (x A^T B^T) scale` with `s = m / ||W + B A scale||` (the norm detached), SGD on A, B
    and m."""
    for size in SIZES:
        base = nn.Linear(size, size).requires_grad_(False)
        a = nn.Parameter(torch.randn(RANK, size) * 0.01)
        b = nn.Parameter(torch.zeros(size, RANK))
        m = nn.Parameter(torch.linalg.norm(base.weight, dim=1))
        opt = torch.optim.SGD([a, b, m], lr=LEARNING_RATE)
        x, target = torch.randn(BATCH, size), torch.randn(BATCH, size)
        scale = ALPHA / RANK

        def step():
            opt.zero_grad()
            with torch.no_grad():
                norm = torch.linalg.norm(base.weight + (b @ a) * scale, dim=1)
            s = m / norm
            base_out = base(x)
            ys = base_out + (s - 1) * (base_out - base.bias) + s * (x @ a.T @ b.T) * scale
            F.mse_loss(ys, target).backward()
            opt.step()

        bench.run(f"dora_{size}", "by_hand", linear_policy(size), step)


@case
def dora_peft(bench):
    """PEFT's own DoRA layer (`LoraConfig(use_dora=True)` on the Linear), SGD on its A, B
    and magnitude."""
    import warnings

    from peft import LoraConfig, get_peft_model

    for size in SIZES:
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["0"], use_dora=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' FutureWarning inside PEFT
            model = get_peft_model(nn.Sequential(nn.Linear(size, size)), config)
        model.train()
        step = sgd_step(model, [p for p in model.parameters() if p.requires_grad], size)
        bench.run(f"dora_{size}", "peft", linear_policy(size), step)
