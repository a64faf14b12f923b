"""Builds a tiny transformers GPT-2 with random weights (fixed seeds), saves it as a
transformers folder, with the logits and greedy tokens transformers computes beside it.

  gpt2_real.py write DIR
"""
import sys

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel


def write(folder):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=83, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases and norms away from their initial zeros and ones
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    ids = torch.randint(0, config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(1))
    lengths = [5, 9, 3]
    width = max(lengths)
    prompts = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    generator = torch.Generator().manual_seed(2)
    for row, n in enumerate(lengths):
        prompts[row, width - n:] = torch.randint(1, config.vocab_size, (n,), generator=generator)
        mask[row, width - n:] = 1
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        sequences = model.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=32,
                                   min_new_tokens=32, do_sample=False, pad_token_id=0,
                                   eos_token_id=None)
    save_file({"input_ids": ids, "logits": logits.contiguous(), "prompts": prompts,
               "attention_mask": mask, "sequences": sequences.contiguous()},
              f"{folder}/expected.safetensors")
    print("gpt2_real: OK, written")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
