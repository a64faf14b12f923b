"""PEFT LoRA on a transformers GPT-2 folder (its Conv1D layers store weights [in, out], PEFT's
fan_in_fan_out), both ways.

  peft_gpt2.py write MODEL ADAPTER CASE   an adapter of CASE with random A and B
                                          (init_lora_weights=False), saved by PEFT
  peft_gpt2.py check MODEL ADAPTER        ADAPTER loaded by PeftModel.from_pretrained

Both save ADAPTER/peft_outputs.safetensors: the logits with the adapter, then the logits and
every weight of the model merge_and_unload gives ("merged.<name>").
"""
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import GPT2LMHeadModel

CASES = {
    # PEFT's own GPT-2 setting: c_attn, fan_in_fan_out=True.
    "c_attn": dict(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True),
    # Every Conv1D (all-linear leaves out lm_head), rsLoRA, per-module ranks and alphas;
    # fan_in_fan_out left False, which PEFT sets to True for Conv1D itself.
    "all_linear": dict(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=True,
                       rank_pattern={"c_fc": 2}, alpha_pattern={"h.1.attn.c_attn": 16}),
    # DoRA on c_attn (PEFT's DoraLinearLayer with fan_in_fan_out); the magnitude is then
    # scaled at random, so that m / ||W + dW|| is not 1.
    "dora_c_attn": dict(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                        use_dora=True),
}


def outputs(model, model_dir, adapter_dir):
    ids = load_file(f"{model_dir}/expected.safetensors")["input_ids"]
    with torch.no_grad():
        tensors = {"logits": model(input_ids=ids).logits.contiguous()}
        merged = model.merge_and_unload().eval()
        tensors["merged_logits"] = merged(input_ids=ids).logits.contiguous()
    for name, tensor in merged.state_dict().items():
        tensors[f"merged.{name}"] = tensor.detach().clone().contiguous()
    save_file(tensors, f"{adapter_dir}/peft_outputs.safetensors")


def write(model_dir, adapter_dir, case):
    torch.manual_seed(3)
    base = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    config = LoraConfig(lora_dropout=0.0, init_lora_weights=False, **CASES[case])
    model = get_peft_model(base, config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_magnitude_vector" in name:
                parameter.mul_(0.5 + torch.rand_like(parameter))
    model.save_pretrained(adapter_dir)
    outputs(model, model_dir, adapter_dir)
    print("peft_gpt2: OK, written")


def check(model_dir, adapter_dir):
    base = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    outputs(model, model_dir, adapter_dir)
    print("peft_gpt2: OK, checked")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(*sys.argv[2:5])
    elif sys.argv[1] == "check":
        check(*sys.argv[2:4])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
