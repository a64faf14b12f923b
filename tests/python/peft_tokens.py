"""PEFT's trainable tokens (`trainable_token_indices`) against the real `peft` package (0.21.2),
run by tests/peft_tokens.rs.

The model is an Embedding(32, 8) `emb` followed by a Linear(8, 8) `proj`: a LoRA on `proj` and
trainable tokens [3, 7] on `emb`. Rust builds the same model.

    peft_tokens.py base DIR          -- seeded base weights (base.safetensors) and token ids
                                        (ids.safetensors, which use tokens 3 and 7), for both sides.
    peft_tokens.py write DIR CASE    -- PEFT makes an adapter in DIR/CASE (LoraConfig(target_modules=
                                        ["proj"], trainable_token_indices={"emb": [3, 7]})), sets the
                                        token rows and LoRA's A and B to random values, saves it;
                                        PEFT then loads it from the folder onto a fresh base, and its
                                        output goes to DIR/CASE/peft.safetensors.
        lora          the LoRA config above
    peft_tokens.py check DIR ADAPTER -- Rust saved a PEFT adapter in ADAPTER and its outputs (out,
                                        merged) in ADAPTER/rust.safetensors: the config must have
                                        exactly the fields PEFT writes; PEFT loads it with
                                        PeftModel.from_pretrained (emb's trainable rows must be the
                                        file's) and must give the same outputs, merged with
                                        merge_and_unload too.

Exits non-zero with a message on any mismatch. Nothing is fetched from a model hub.
"""
import os
import sys

import emb_proj
import peft_common
import torch
from peft import LoraConfig, get_peft_model
from emb_proj import base_model, ids
from safetensors.torch import load_file, save_file

TOKENS = [3, 7]
KEY = "base_model.model.emb.token_adapter.trainable_tokens_delta"


def fail(message):
    peft_common.fail("peft_tokens", message)


def write_base(folder):
    def force_tokens(inputs):
        inputs[0, 0], inputs[1, 2], inputs[2, 4] = 3, 7, 3

    emb_proj.write_base("peft_tokens", folder, force_tokens)


def token_layer(model):
    return model.base_model.model.emb.token_adapter


def write(folder, case):
    if case != "lora":
        fail(f"unknown case {case}")
    adapter = os.path.join(folder, case)
    torch.manual_seed(1)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["proj"], trainable_token_indices={"emb": TOKENS})
    model = get_peft_model(base_model(folder), config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name or "trainable_tokens_delta" in name:
                parameter.copy_(torch.randn_like(parameter))
    model.save_pretrained(adapter)
    saved = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    if sorted(saved) != [KEY, "base_model.model.proj.lora_A.weight", "base_model.model.proj.lora_B.weight"]:
        fail(f"PEFT saved other keys: {sorted(saved)}")
    loaded, out = peft_common.peft_output(base_model(folder), adapter, ids(folder))
    if not torch.equal(token_layer(loaded).trainable_tokens_delta["default"], saved[KEY]):
        fail("PEFT's loaded token rows are not the file's")
    with torch.no_grad():
        base_out = base_model(folder)(ids(folder))
    if (out - base_out).abs().max() < 1e-3:
        fail(f"{case}: the adapter changes nothing; the check would prove nothing")
    save_file({"out": out}, os.path.join(adapter, "peft.safetensors"))
    print(f"peft_tokens: OK, {case} written")


def check(folder, adapter):
    peft_common.check_config_fields("peft_tokens", adapter)
    rust = load_file(os.path.join(adapter, "rust.safetensors"))
    saved = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    model, out = peft_common.peft_output(base_model(folder), adapter, ids(folder))
    layer = token_layer(model)
    if layer.token_indices["default"] != TOKENS:
        fail(f"PEFT's token ids are {layer.token_indices['default']}, not {TOKENS}")
    if not torch.equal(layer.trainable_tokens_delta["default"], saved[KEY]):
        fail("PEFT's token rows are not the file's")
    peft_common.compare_with_rust("peft_tokens", model, out, rust, ids(folder))


if __name__ == "__main__":
    peft_common.main("peft_tokens", __doc__, sys.argv, write_base, write, check)
