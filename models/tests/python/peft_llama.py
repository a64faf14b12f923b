"""PEFT LoRA on a transformers Llama folder, both ways.

  peft_llama.py write MODEL ADAPTER [TARGETS]
                                       a LoRA adapter on q_proj and v_proj (or the comma-separated
                                       TARGETS, e.g. embed_tokens,q_proj) with random A and B
                                       (init_lora_weights=False), saved by PEFT, with its logits
  peft_llama.py logits MODEL ADAPTER   the logits of MODEL with the adapter PEFT loads from ADAPTER
"""
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM


def ids(model_dir):
    return load_file(f"{model_dir}/expected.safetensors")["input_ids"]


def write(model_dir, adapter_dir, targets="q_proj,v_proj"):
    torch.manual_seed(3)
    base = LlamaForCausalLM.from_pretrained(model_dir).eval()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets.split(","), lora_dropout=0.0,
                        init_lora_weights=False)
    model = get_peft_model(base, config).eval()
    model.save_pretrained(adapter_dir)
    with torch.no_grad():
        logits = model(input_ids=ids(model_dir)).logits
    save_file({"logits": logits.contiguous()}, f"{adapter_dir}/peft_logits.safetensors")
    print("peft_llama: OK, written")


def logits(model_dir, adapter_dir):
    base = LlamaForCausalLM.from_pretrained(model_dir).eval()
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        out = model(input_ids=ids(model_dir)).logits
    save_file({"logits": out.contiguous()}, f"{adapter_dir}/peft_logits.safetensors")
    print("peft_llama: OK, logits")


if __name__ == "__main__":
    {"write": write, "logits": logits}[sys.argv[1]](*sys.argv[2:])
