"""A small Llama end to end with transformers and PEFT (models/benches/llama.rs): greedy
decoding with the KV cache, a LoRA training step, loading a folder and an adapter to the
first logits. The model is bench/llama_config.json with random weights, saved once by
transformers and PEFT into a temporary folder."""

import json
import pathlib
import tempfile

import torch
import torch.nn.functional as F

from .harness import case

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "llama_config.json"
PROMPT, NEW_TOKENS = 16, 32


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)


def base_model():
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # `from_pretrained`'s, on every load

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**json.loads(CONFIG.read_text()))).eval()


def tokens(vocab, batch, length):
    return torch.randint(1, vocab, (batch, length))


@case
def llama(bench):
    from peft import PeftModel, get_peft_model
    from transformers import LlamaForCausalLM

    model = base_model()
    vocab = model.config.vocab_size
    for batch in (1, 8):
        prompts = tokens(vocab, batch, PROMPT)
        mask = torch.ones(batch, PROMPT, dtype=torch.long)

        def generate():
            with torch.no_grad():
                return model.generate(input_ids=prompts, attention_mask=mask,
                                      max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                      do_sample=False, pad_token_id=0, eos_token_id=None)

        bench.run(f"llama_greedy_b{batch}", "generate", "slow", generate)

    peft_model = get_peft_model(base_model(), lora_config()).train()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = tokens(vocab, 4, 128)
    inputs, targets = ids[:, :-1], ids[:, 1:].reshape(-1)

    def train_step():
        opt.zero_grad()
        logits = peft_model(input_ids=inputs).logits
        F.cross_entropy(logits.reshape(-1, vocab), targets).backward()
        opt.step()

    bench.run("llama_lora_step", "train_step", "slow", train_step)

    with tempfile.TemporaryDirectory(prefix="tch-patch-bench-llama-") as root:
        model_dir, adapter_dir = f"{root}/model", f"{root}/adapter"
        base_model().save_pretrained(model_dir)
        adapted = get_peft_model(base_model(), lora_config())
        with torch.no_grad():
            for name, p in adapted.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn_like(p) * 0.01)
        adapted.save_pretrained(adapter_dir)
        first = tokens(vocab, 1, PROMPT)

        def load_to_logits():
            base = LlamaForCausalLM.from_pretrained(model_dir)
            loaded = PeftModel.from_pretrained(base, adapter_dir).eval()
            with torch.no_grad():
                return loaded(input_ids=first).logits

        bench.run("llama_load", "load_to_logits", "slow", load_to_logits)
