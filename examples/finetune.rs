//! The flagship example: pre-train a small transformer-style language model, then fine-tune
//! it for a new task by patching it at run time:
//!
//! 1. pre-train (embeddings, attention + MLP blocks, LayerNorm, a head) on a synthetic
//!    sequence task for a few seconds;
//! 2. apply a patch string (LoRA on the attention projections by default) and
//!    `MostlyFrozenEmbedding` for tokens the pre-training never used;
//! 3. fine-tune on a new task that uses those tokens, with a progress bar;
//! 4. print the model tree with what is patched and what trains;
//! 5. save only what the patches added (the adapter) and compare its size to the model's;
//! 6. merge the LoRA updates into the base weights and export TorchScript.
//!
//! `make demo` runs it; `cargo run --release --example finetune -- --help` lists the flags.
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::path::PathBuf;
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{CModule, Device, Kind, Tensor};
use tch_patch::prelude::*;
use tch_patch::{
    adapter::load_model_adapter, adapter::save_model_adapter, load::load_safetensors,
    load::LoadOptions, patches::Lora, patches::MostlyFrozenEmbedding, registry::apply_specs,
    registry::Registry, save::save_module, tree::print_tree, tree::ApplyReport, tree::DynLayer,
};

#[derive(Parser, Debug)]
#[command(about = "Pre-train a small model, then fine-tune it through run-time patches")]
struct Args {
    /// Patches applied for fine-tuning (a `;`-separated patch string).
    #[arg(
        long,
        default_value = r#"lora(rank=8, alpha=16, targets="*.attn.{q,v}")"#
    )]
    patches: String,
    /// Pre-training steps.
    #[arg(long, default_value_t = 250)]
    pretrain_steps: usize,
    /// Fine-tuning steps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Output folder for the checkpoint, the adapter and the TorchScript module.
    #[arg(long, default_value = "target/finetune")]
    out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

const VOCAB: i64 = 48;
/// Tokens the pre-training never sees: the fine-tuning task introduces them.
const NEW_TOKENS: [i64; 4] = [44, 45, 46, 47];
const DIM: i64 = 64;
const LAYERS: i64 = 2;
const SEQ: i64 = 16;
const BATCH: i64 = 32;

#[derive(ModuleTree, Parameters)]
struct Attention {
    q: Slot<nn::Linear>,
    k: Slot<nn::Linear>,
    v: Slot<nn::Linear>,
    o: Slot<nn::Linear>,
}

#[derive(ModuleTree, Parameters)]
struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    up: Slot<nn::Linear>,
    down: Slot<nn::Linear>,
}

#[derive(ModuleTree, Parameters)]
struct LanguageModel {
    embed: Slot<nn::Embedding>,
    position: nn::Embedding,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    head: Slot<nn::Linear>,
}

impl LanguageModel {
    fn new(root: &nn::Path) -> Self {
        let linear = |p: nn::Path, i, o| Slot::new(nn::linear(p, i, o, Default::default()));
        let blocks = (0..LAYERS)
            .map(|i| {
                let p = root / "blocks" / i;
                Block {
                    norm1: nn::layer_norm(&p / "norm1", vec![DIM], Default::default()),
                    attn: Attention {
                        q: linear(&p / "attn" / "q", DIM, DIM),
                        k: linear(&p / "attn" / "k", DIM, DIM),
                        v: linear(&p / "attn" / "v", DIM, DIM),
                        o: linear(&p / "attn" / "o", DIM, DIM),
                    },
                    norm2: nn::layer_norm(&p / "norm2", vec![DIM], Default::default()),
                    up: linear(&p / "up", DIM, 4 * DIM),
                    down: linear(&p / "down", 4 * DIM, DIM),
                }
            })
            .collect();
        let embedding = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn {
                mean: 0.,
                stdev: 0.1,
            },
            ..Default::default()
        };
        LanguageModel {
            embed: Slot::new(nn::embedding(root / "embed", VOCAB, DIM, embedding)),
            position: nn::embedding(root / "position", SEQ, DIM, embedding),
            blocks,
            norm: nn::layer_norm(root / "norm", vec![DIM], Default::default()),
            head: linear(root / "head", DIM, VOCAB),
        }
    }

    /// Next-token logits `[batch, seq, vocab]` for token ids `[batch, seq]`.
    fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        let positions = Tensor::arange(ids.size()[1], (Kind::Int64, ids.device()));
        let mut xs = self.embed.forward_t(ids, train) + self.position.forward(&positions);
        for block in &self.blocks {
            xs = &xs + block.attn.forward_t(&block.norm1.forward(&xs), train);
            let hidden = block
                .up
                .forward_t(&block.norm2.forward(&xs), train)
                .gelu("none");
            xs = &xs + block.down.forward_t(&hidden, train);
        }
        self.head.forward_t(&self.norm.forward(&xs), train)
    }
}

impl Attention {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (q, k, v) = (
            self.q.forward_t(xs, train),
            self.k.forward_t(xs, train),
            self.v.forward_t(xs, train),
        );
        let seq = xs.size()[1];
        let scores = q.matmul(&k.transpose(-2, -1)) / (DIM as f64).sqrt();
        let causal = Tensor::ones([seq, seq], (Kind::Bool, xs.device())).triu(1);
        let weights = scores
            .masked_fill(&causal, f64::NEG_INFINITY)
            .softmax(-1, Kind::Float);
        self.o.forward_t(&weights.matmul(&v), train)
    }
}

/// A synthetic language: each sequence counts up by `step` modulo `vocab` from a random
/// start. Pre-training uses step 1 over the first tokens; fine-tuning uses step 3 over a
/// vocabulary that includes the new tokens.
fn batch(vocab: i64, step: i64, device: Device) -> (Tensor, Tensor) {
    let start = Tensor::randint(vocab, [BATCH, 1], (Kind::Int64, device));
    let offsets = Tensor::arange(SEQ + 1, (Kind::Int64, device)) * step;
    let tokens = (start + offsets).remainder(vocab);
    (tokens.narrow(1, 0, SEQ), tokens.narrow(1, 1, SEQ))
}

fn loss_of(model: &LanguageModel, ids: &Tensor, next: &Tensor, train: bool) -> Tensor {
    model
        .forward_t(ids, train)
        .reshape([-1, VOCAB])
        .cross_entropy_for_logits(&next.reshape([-1]))
}

fn accuracy(model: &LanguageModel, vocab: i64, step: i64) -> f64 {
    let _guard = tch::no_grad_guard();
    let (ids, next) = batch(vocab, step, Device::Cpu);
    let predicted = model.forward_t(&ids, false).argmax(-1, false);
    predicted
        .eq_tensor(&next)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

fn train(
    model: &LanguageModel,
    vs: &nn::VarStore,
    steps: usize,
    lr: f64,
    vocab: i64,
    step: i64,
    label: &str,
) -> anyhow_free::Result<f64> {
    let mut opt = nn::AdamW::default().build(vs, lr)?;
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{label:>10} {{bar:40}} {{pos}}/{{len}} loss {{msg}}"
        ))?
        .progress_chars("=> "),
    );
    let mut last = f64::NAN;
    for _ in 0..steps {
        let (ids, next) = batch(vocab, step, Device::Cpu);
        let loss = loss_of(model, &ids, &next, true);
        opt.backward_step(&loss);
        last = loss.double_value(&[]);
        bar.set_message(format!("{last:.4}"));
        bar.inc(1);
    }
    bar.finish();
    Ok(last)
}

/// A tiny alias so `?` works on every error type the example meets.
mod anyhow_free {
    pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}

fn main() -> anyhow_free::Result<()> {
    let args = Args::parse();
    tch::manual_seed(args.seed);
    tch::set_num_threads(2);
    std::fs::create_dir_all(&args.out)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = LanguageModel::new(&vs.root());
    let old_vocab = VOCAB - NEW_TOKENS.len() as i64;

    println!("== pre-training on the old task (step 1 over {old_vocab} tokens)");
    train(
        &model,
        &vs,
        args.pretrain_steps,
        3e-3,
        old_vocab,
        1,
        "pretrain",
    )?;
    println!(
        "accuracy on the old task: {:.3}",
        accuracy(&model, old_vocab, 1)
    );
    let full_checkpoint = args.out.join("model.safetensors");
    save_module(&model, &full_checkpoint, "")?;
    println!(
        "new task before fine-tuning: accuracy {:.3}",
        accuracy(&model, VOCAB, 3)
    );

    let base_names = tensor_names(&model);
    println!("\n== patching: {}", args.patches);
    let tokens: Vec<String> = NEW_TOKENS.iter().map(i64::to_string).collect();
    let patch_string = format!(
        r#"{}; mostly_frozen_embedding(tokens=[{}], targets="embed")"#,
        args.patches.trim_end_matches(';'),
        tokens.join(", ")
    );
    let specs = Registry::global()?.parse(&patch_string)?;
    for report in apply_specs(&mut model, &vs, &specs)? {
        println!(
            "  {} patched {} slot(s): {}",
            report.rule,
            report.len(),
            report.paths().join(", ")
        );
    }
    // Everything the patches did not add stays as pre-trained: freeze it (PEFT does the same).
    let added: HashSet<String> = tensor_names(&model)
        .difference(&base_names)
        .cloned()
        .collect();
    for tensor in named_tensors(&model) {
        if !added.contains(&tensor.name) {
            let _ = tensor.tensor.set_requires_grad(false);
        }
    }

    println!(
        "\n== fine-tuning on the new task (step 3 over {VOCAB} tokens, including {NEW_TOKENS:?})"
    );
    train(&model, &vs, args.steps, 1e-2, VOCAB, 3, "finetune")?;
    let tuned_accuracy = accuracy(&model, VOCAB, 3);
    println!("new task after fine-tuning: accuracy {tuned_accuracy:.3}");
    println!("\n{}", print_tree(&model));

    let adapter_dir = args.out.join("adapter");
    let summary = save_model_adapter(&adapter_dir, &model, &specs)?;
    let adapter_bytes = file_size(&adapter_dir.join("adapter.safetensors"))?
        + file_size(&adapter_dir.join("adapter.json"))?;
    let model_bytes = file_size(&full_checkpoint)?;
    println!(
        "adapter {} ({} tensors, {adapter_bytes} bytes with its manifest) vs full model {model_bytes} bytes: {:.1}%",
        adapter_dir.display(),
        summary.tensors,
        100.0 * adapter_bytes as f64 / model_bytes as f64
    );

    println!("\n== reloading: pre-trained checkpoint + adapter onto a fresh model");
    let fresh_vs = nn::VarStore::new(Device::Cpu);
    let mut fresh = LanguageModel::new(&fresh_vs.root());
    load_safetensors(&mut fresh, &full_checkpoint, &LoadOptions::new())?;
    let reports = load_model_adapter(&mut fresh, &fresh_vs, &adapter_dir)?;
    let paths: usize = reports.iter().map(ApplyReport::len).sum();
    let (ids, _) = batch(VOCAB, 3, Device::Cpu);
    let trained_out = tch::no_grad(|| model.forward_t(&ids, false));
    let reloaded_out = tch::no_grad(|| fresh.forward_t(&ids, false));
    let reload_error = (&trained_out - &reloaded_out).abs().max().double_value(&[]);
    println!("re-created {paths} patch(es) from the manifest; max |trained - reloaded| = {reload_error:.2e}");

    println!("\n== merging LoRA into the base weights and exporting TorchScript");
    let before_merge = tch::no_grad(|| model.forward_t(&ids, false));
    let merged = merge_loras(&mut model)?;
    let after_merge = tch::no_grad(|| model.forward_t(&ids, false));
    let merge_error = (&before_merge - &after_merge).abs().max().double_value(&[]);
    println!("merged {merged} LoRA layer(s); max |unmerged - merged| = {merge_error:.2e}");
    // Tracing records tensors as constants, which must not require grad: export a frozen copy.
    for tensor in named_tensors(&model) {
        let _ = tensor.tensor.set_requires_grad(false);
    }
    let script_file = args.out.join("finetuned.pt");
    let traced = CModule::create_by_tracing(
        "FineTuned",
        "forward",
        &[ids.shallow_clone()],
        &mut |inputs| vec![model.forward_t(&inputs[0], false)],
    )?;
    traced.save(&script_file)?;
    let reloaded = CModule::load(&script_file)?;
    let script_error = (reloaded.forward_ts(&[&ids])? - &after_merge)
        .abs()
        .max()
        .double_value(&[]);
    println!(
        "TorchScript {} reloaded: max |difference| = {script_error:.2e}",
        script_file.display()
    );
    let embedding = model
        .embed
        .downcast_ref::<MostlyFrozenEmbedding>()
        .map(|e| e.token_ids());
    println!("trained token rows: {embedding:?}");
    if reload_error > 1e-6 || merge_error > 1e-4 || script_error > 1e-5 {
        return Err("reloaded, merged or exported outputs differ from the fine-tuned model".into());
    }
    Ok(())
}

/// Every tensor name of the model.
fn tensor_names(model: &LanguageModel) -> HashSet<String> {
    named_tensors(model).into_iter().map(|t| t.name).collect()
}

fn merge_loras(model: &mut LanguageModel) -> anyhow_free::Result<usize> {
    let mut merged = 0;
    let mut merge = |slot: &mut Slot<nn::Linear>| -> anyhow_free::Result<()> {
        if let Some(lora) = slot.find_mut::<Lora<DynLayer<nn::Linear>>>() {
            lora.merge()?;
            merged += 1;
        }
        Ok(())
    };
    for block in &mut model.blocks {
        for slot in [
            &mut block.attn.q,
            &mut block.attn.k,
            &mut block.attn.v,
            &mut block.attn.o,
            &mut block.up,
            &mut block.down,
        ] {
            merge(slot)?;
        }
    }
    merge(&mut model.head)?;
    Ok(merged)
}

fn file_size(path: &std::path::Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}
