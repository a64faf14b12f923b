"""Builds tiny transformers Llama models with random weights (fixed seeds), saves each as a
transformers folder, and the logits transformers computes for fixed input ids beside it.

  llama_real.py write DIR CASE    CASE: llama3_gqa | tied_default | sharded | bf16
  llama_real.py generate DIR      greedy tokens of transformers' generate for the model in DIR
  llama_real.py logits DIR        transformers' logits for DIR's model on DIR/ids.safetensors
"""
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

CASES = {
    # GQA (4 query heads over 2 key/value heads), llama3 RoPE scaling, untied head.
    "llama3_gqa": dict(
        vocab_size=97, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 16},
    ),
    # Default RoPE, tied head, biases on the attention projections, head_dim set apart.
    "tied_default": dict(
        vocab_size=61, hidden_size=24, intermediate_size=40, num_hidden_layers=3,
        num_attention_heads=3, num_key_value_heads=3, head_dim=16, max_position_embeddings=64,
        tie_word_embeddings=True, attention_bias=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    ),
}


# The same model, saved another way.
VARIANTS = {"sharded": "llama3_gqa", "bf16": "llama3_gqa"}


def write(folder, case):
    torch.manual_seed(0)
    config = LlamaConfig(**CASES[VARIANTS.get(case, case)])
    model = LlamaForCausalLM(config).eval()
    # Untrained norms are all ones: give them values so a wrong norm shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    if case == "bf16":
        model = model.to(torch.bfloat16)
    # 20 KB shards: the tiny model spreads over several files and an index.
    model.save_pretrained(folder, max_shard_size="20KB" if case == "sharded" else "50GB")
    ids = torch.randint(0, config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    save_file({"input_ids": ids, "logits": logits.contiguous()}, f"{folder}/expected.safetensors")
    print(f"llama_real: OK, {case} written")


def generate(folder):
    """Greedy decoding of 32 tokens for 3 prompts of lengths 5, 9 and 3, left-padded with 0."""
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    generator = torch.Generator().manual_seed(2)
    lengths = [5, 9, 3]
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = torch.randint(3, model.config.vocab_size, (n,), generator=generator)
        mask[row, width - n:] = 1
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=32, min_new_tokens=32,
                             do_sample=False, pad_token_id=0, eos_token_id=None)
    save_file({"input_ids": ids, "attention_mask": mask, "sequences": out.contiguous()},
              f"{folder}/generated.safetensors")
    print("llama_real: OK, generated")


def logits(folder):
    """The logits transformers computes for the folder's model on `ids.safetensors`."""
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    ids = load_file(f"{folder}/ids.safetensors")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids).logits
    save_file({"logits": out.contiguous()}, f"{folder}/logits.safetensors")
    print("llama_real: OK, logits")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "generate":
        generate(sys.argv[2])
    elif sys.argv[1] == "logits":
        logits(sys.argv[2])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
