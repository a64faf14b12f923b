"""The model of the embedding cross-checks (peft_embedding.py, peft_tokens.py):
Embedding(32, 8) then Linear(8, 8), seeded base weights and token ids in a folder, for
both sides (tests/common/emb_proj.rs builds the same model in Rust)."""
import os

import torch
from safetensors.torch import load_file, save_file

VOCAB, DIM = 32, 8


class EmbProj(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, DIM)
        self.proj = torch.nn.Linear(DIM, DIM)

    def forward(self, ids):
        return self.proj(self.emb(ids))


def base_model(folder):
    model = EmbProj()
    model.load_state_dict(load_file(os.path.join(folder, "base.safetensors")))
    return model.eval()


def ids(folder):
    return load_file(os.path.join(folder, "ids.safetensors"))["ids"]


def write_base(script, folder, adjust_ids=None):
    """Seeded base weights and a [3, 5] batch of token ids; `adjust_ids(ids)` may set
    some ids in place (after the draw, so the weights stay the same)."""
    torch.manual_seed(0)
    model = EmbProj()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "base.safetensors"))
    inputs = torch.randint(0, VOCAB, (3, 5))
    if adjust_ids is not None:
        adjust_ids(inputs)
    save_file({"ids": inputs}, os.path.join(folder, "ids.safetensors"))
    print(f"{script}: OK, base written")
