"""LoRA on an embedding against the real `peft` package (0.21.2), run by tests/peft_embedding.rs.

The model is an Embedding(32, 8) `emb` followed by a Linear(8, 8) `proj`, so that
target_modules=["emb", "proj"] adapts one module of each kind. Rust builds the same model.

    peft_embedding.py base DIR          -- seeded base weights (base.safetensors) and token ids
                                           (ids.safetensors), for both sides.
    peft_embedding.py write DIR CASE    -- PEFT makes an adapter in DIR/CASE, sets every LoRA
                                           tensor to random values, saves it; PEFT then loads it
                                           from the folder onto a fresh base, and its output and
                                           scalings go to DIR/CASE/peft.safetensors.
        plain         r=4, lora_alpha=8
        patterns      rsLoRA, rank_pattern {"emb": 2}, alpha_pattern {"proj": 16}, lora_dropout 0.1
    peft_embedding.py check DIR ADAPTER -- Rust saved a PEFT adapter in ADAPTER and its outputs
                                           (out, merged) in ADAPTER/rust.safetensors: the config must
                                           have exactly the fields PEFT writes; PEFT loads it
                                           with PeftModel.from_pretrained (emb must become a LoRA
                                           Embedding with the file's tensors) and must give the same
                                           outputs, merged with merge_and_unload too.

Exits non-zero with a message on any mismatch. Nothing is fetched from a model hub.
"""
import os
import sys

import emb_proj
import peft_common
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Embedding as LoraEmbedding
from emb_proj import base_model, ids
from safetensors.torch import load_file, save_file

CASES = {
    "plain": dict(r=4, lora_alpha=8),
    "patterns": dict(r=4, lora_alpha=8, use_rslora=True, lora_dropout=0.1,
                     rank_pattern={"emb": 2}, alpha_pattern={"proj": 16}),
}


def fail(message):
    peft_common.fail("peft_embedding", message)


def write_base(folder):
    emb_proj.write_base("peft_embedding", folder)


def peft_output(folder, adapter):
    """What PEFT computes with the adapter as it loads it from its folder."""
    return peft_common.peft_output(base_model(folder), adapter, ids(folder))


def write(folder, case):
    adapter = os.path.join(folder, case)
    torch.manual_seed(1)
    model = get_peft_model(base_model(folder), LoraConfig(target_modules=["emb", "proj"], **CASES[case]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn_like(parameter))
    model.save_pretrained(adapter)
    loaded, out = peft_output(folder, adapter)
    if not isinstance(loaded.base_model.model.emb, LoraEmbedding):
        fail(f"{case}: PEFT did not put a LoRA Embedding on emb")
    with torch.no_grad():
        base_out = base_model(folder)(ids(folder))
    if (out - base_out).abs().max() < 1e-3:
        fail(f"{case}: the adapter changes nothing; the check would prove nothing")
    tensors = {"out": out}
    for path in ("emb", "proj"):
        layer = loaded.base_model.model.get_submodule(path)
        tensors[f"scaling.{path}"] = torch.tensor([layer.scaling["default"]], dtype=torch.float64)
    save_file(tensors, os.path.join(adapter, "peft.safetensors"))
    print(f"peft_embedding: OK, {case} written")


def check(folder, adapter):
    peft_common.check_config_fields("peft_embedding", adapter)
    rust = load_file(os.path.join(adapter, "rust.safetensors"))
    saved = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    model, out = peft_output(folder, adapter)
    emb = model.base_model.model.emb
    if not isinstance(emb, LoraEmbedding):
        fail("PEFT did not put a LoRA Embedding on emb")
    for which in ("A", "B"):
        loaded = getattr(emb, f"lora_embedding_{which}")["default"]
        if not torch.equal(loaded, saved[f"base_model.model.emb.lora_embedding_{which}"]):
            fail(f"PEFT's lora_embedding_{which} is not the file's")
    peft_common.compare_with_rust("peft_embedding", model, out, rust, ids(folder))


if __name__ == "__main__":
    peft_common.main("peft_embedding", __doc__, sys.argv, write_base, write, check)
