//! Fine-tune LoRA on a Llama in Rust, save a PEFT adapter, reload it, decode.
//!
//! cargo run --release -p tch-patch-models --example llama_lora -- [--model DIR] [--out DIR]
//!
//! Without `--model`, a small Llama with random weights is built from a config and saved
//! as a transformers folder beside the adapter, so that Python can load both.
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tch_patch::{peft, registry::Registry};
use tch_patch_models::decoding::CausalLm;
use tch_patch_models::llama::{LlamaConfig, LlamaForCausalLM, Rope};

#[derive(Parser, Debug)]
#[command(about = "LoRA fine-tuning of a Llama, saved as a PEFT adapter")]
struct Args {
    /// A transformers Llama folder (config.json, model.safetensors); a small random model if absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the adapter (and the base, when built here) are written.
    #[arg(long, default_value = "target/llama_lora")]
    out: PathBuf,
    /// The patch string of the fine-tuning.
    #[arg(
        long,
        default_value = r#"lora(rank=8, alpha=16, targets="*.self_attn.{q_proj,v_proj}")"#
    )]
    patches: String,
    /// Training steps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
}

fn small_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 64,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        max_position_embeddings: 128,
        rms_norm_eps: 1e-5,
        rope: Rope::Default { theta: 10000.0 },
        tie_word_embeddings: false,
        attention_bias: false,
        mlp_bias: false,
        dtype: Kind::Float,
    }
}

/// The synthetic task: every next token is the previous one plus 3, modulo the vocabulary.
fn batch(vocab: i64) -> (Tensor, Tensor) {
    let start = Tensor::randint(vocab, [16, 1], (Kind::Int64, Device::Cpu));
    let seq = (start + Tensor::arange(17, (Kind::Int64, Device::Cpu)) * 3).remainder(vocab);
    (seq.narrow(1, 0, 16), seq.narrow(1, 1, 16))
}

fn load(
    args: &Args,
    base_dir: &PathBuf,
) -> Result<(nn::VarStore, LlamaForCausalLM), Box<dyn std::error::Error>> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let dir = args.model.as_ref().unwrap_or(base_dir);
    let model = LlamaForCausalLM::from_folder(dir, &mut vs)?;
    Ok((vs, model))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tch::manual_seed(0);
    let base_dir = args.out.join("base");
    let adapter_dir = args.out.join("adapter");
    if args.model.is_none() {
        let vs = nn::VarStore::new(Device::Cpu);
        LlamaForCausalLM::new(&vs.root(), &small_config()).save_folder(&base_dir)?;
        println!(
            "built a small Llama with random weights: {}",
            base_dir.display()
        );
    }
    let (mut vs, mut model) = load(&args, &base_dir)?;
    vs.freeze();
    let specs = Registry::global()?.parse(&args.patches)?;
    tch_patch::registry::apply_specs(&mut model, &vs, &specs)?;
    let trainable: i64 = vs
        .trainable_variables()
        .iter()
        .filter(|t| t.requires_grad())
        .map(|t| t.numel() as i64)
        .sum();
    println!(
        "patched with {}: {trainable} trainable parameters",
        args.patches
    );

    let vocab = model.config().vocab_size;
    let mut opt = nn::AdamW::default().build(&vs, 3e-3)?;
    let bar = ProgressBar::new(args.steps as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} loss {msg}",
    )?);
    for _ in 0..args.steps {
        let (xs, ys) = batch(vocab);
        let logits = model.logits(&xs, true);
        let loss = logits
            .view([-1, vocab])
            .cross_entropy_for_logits(&ys.reshape([-1]));
        opt.backward_step(&loss);
        bar.set_message(format!("{:.3}", loss.double_value(&[])));
        bar.inc(1);
    }
    bar.finish();

    let summary =
        peft::save_model_lora(&adapter_dir, &model, &specs, &peft::PeftOptions::default())?;
    println!(
        "saved a PEFT adapter, {} tensors in {} bytes: {}",
        summary.tensors,
        summary.total_bytes(),
        adapter_dir.display()
    );

    // A fresh copy of the base, the adapter loaded onto it in one call: the same logits.
    let (vs2, mut reloaded) = load(&args, &base_dir)?;
    peft::load_model_lora(&mut reloaded, &vs2, &adapter_dir)?;
    let (xs, _) = batch(vocab);
    let same = tch::no_grad(|| model.logits(&xs, false).equal(&reloaded.logits(&xs, false)));
    println!("reloaded adapter gives the same logits: {same}");

    let prompt = Tensor::from_slice(&[5i64, 8, 11, 14]).unsqueeze(0);
    let out = reloaded.generate_greedy(&prompt, &prompt.ones_like(), 8, None, 0);
    println!(
        "greedy decoding of [5, 8, 11, 14]: {:?}",
        Vec::<i64>::try_from(out.squeeze_dim(0))?
    );

    let base = args.model.as_ref().unwrap_or(&base_dir);
    println!("\nIn Python (transformers + peft):");
    println!("    from transformers import AutoModelForCausalLM; from peft import PeftModel");
    println!(
        "    base = AutoModelForCausalLM.from_pretrained({:?})",
        base.display().to_string()
    );
    println!(
        "    model = PeftModel.from_pretrained(base, {:?})",
        adapter_dir.display().to_string()
    );
    Ok(())
}
