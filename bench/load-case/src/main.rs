//! One load of a checkpoint of `layers` square linear layers (`{i}.weight`, `{i}.bias`, as
//! PyTorch's `nn.Sequential` of `nn.Linear` names them), in this process alone, for
//! `bench/load_memory.py`: prints one JSON line with the peak resident memory (`VmHWM`,
//! what `getrusage` reports as `ru_maxrss`), the resident memory after the load, and the
//! wall time of the build and of the load.
//!
//!     load-case CASE FILE LAYERS HIDDEN KIND
//!
//! CASE: `init` (tch's layers, no load: the model's own size), `copy` (tch's layers, then a
//! streaming load into them), `skeleton_copy`, `skeleton_assign`, `map` (a skeleton, then
//! a load in that mode), `quantize` (`Int8Linear::new_uninit` layers of a skeleton, filled
//! by `Int8Linear::load_hook` quantizing each float weight as it is read), `varstore` (tch's layers, then tch's
//! own `VarStore::load`). KIND: `f32` or `bf16`.
use std::time::Instant;
use tch::{nn, Device, Kind};
use tch_patch::load::{self, LoadMode, LoadOptions, Skeleton};
use tch_patch::patches::{Int8Config, Int8Linear};

/// This process's resident memory now and at its peak, in bytes (`VmRSS`, `VmHWM`).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn tch_layers(root: &nn::Path, layers: i64, hidden: i64) -> Vec<nn::Linear> {
    (0..layers)
        .map(|i| nn::linear(root / i, hidden, hidden, Default::default()))
        .collect()
}

fn skeleton(vs: &nn::VarStore, layers: i64, hidden: i64) -> Skeleton<Vec<nn::Linear>> {
    let root = vs.root();
    Skeleton::build(vs, |fill| {
        (0..layers)
            .map(|i| load::linear(&(&root / i), hidden, hidden, Default::default(), fill))
            .collect()
    })
}

fn run() -> Result<String, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [case, file, layers, hidden, kind] = args.as_slice() else {
        return Err("usage: load-case CASE FILE LAYERS HIDDEN KIND".into());
    };
    let (layers, hidden): (i64, i64) = (layers.parse()?, hidden.parse()?);
    let kind = match kind.as_str() {
        "f32" => Kind::Float,
        "bf16" => Kind::BFloat16,
        other => return Err(format!("unknown kind {other}").into()),
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(kind);
    let root = vs.root();
    let started = Instant::now();
    let mut built: Option<Vec<nn::Linear>> = None;
    let mut skeleton_model = None;
    let mut quantized = None;
    match case.as_str() {
        "init" | "copy" | "varstore" => built = Some(tch_layers(&root, layers, hidden)),
        "skeleton_copy" | "skeleton_assign" | "map" => {
            skeleton_model = Some(skeleton(&vs, layers, hidden))
        }
        "quantize" => {
            quantized = Some(Skeleton::build(&vs, |fill| {
                (0..layers)
                    .map(|i| {
                        let p = &root / i;
                        let float = load::linear(&p, hidden, hidden, Default::default(), fill);
                        Int8Linear::new_uninit(float, &p, &Int8Config::default())
                            .expect("a 2-D weight and a free name")
                    })
                    .collect::<Vec<_>>()
            }))
        }
        other => return Err(format!("unknown case {other}").into()),
    }
    let build_seconds = started.elapsed().as_secs_f64();
    let (before, _) = memory();
    let started = Instant::now();
    let mut loaded = 0usize;
    match case.as_str() {
        "init" => {}
        "copy" => {
            let model = built.as_mut().expect("built");
            loaded = load::load_safetensors(model, file, &LoadOptions::new())?
                .loaded
                .len();
        }
        "varstore" => {
            vs.load(file)?;
            loaded = vs.variables().len();
        }
        "skeleton_copy" | "skeleton_assign" | "map" => {
            let mode = match case.as_str() {
                "skeleton_copy" => LoadMode::Copy,
                "skeleton_assign" => LoadMode::Assign,
                _ => LoadMode::Map,
            };
            let model = skeleton_model
                .take()
                .expect("skeleton")
                .load(file, &LoadOptions::new().mode(mode))?;
            loaded = model.len() * 2;
            built = Some(model);
        }
        "quantize" => {
            let skeleton = quantized.take().expect("skeleton");
            let hook = Int8Linear::load_hook(skeleton.module());
            let model =
                skeleton.load_with(file, &LoadOptions::new().mode(LoadMode::Assign), hook)?;
            loaded = model.len() * 3;
        }
        _ => unreachable!(),
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let (after, peak) = memory();
    // Touch every value (a sum per tensor): the mapped mode's pages come in here.
    let started = Instant::now();
    let mut checksum = 0.0;
    if let Some(model) = &built {
        for layer in model {
            checksum += layer.ws.sum(Kind::Double).double_value(&[]);
        }
    }
    let touch_seconds = started.elapsed().as_secs_f64();
    let (touched, touched_peak) = memory();
    Ok(format!(
        "{{\"case\": \"{case}\", \"kind\": \"{}\", \"build_seconds\": {build_seconds}, \"load_seconds\": {load_seconds}, \"touch_seconds\": {touch_seconds}, \"rss_before_load\": {before}, \"rss_after_load\": {after}, \"rss_after_touch\": {touched}, \"peak_rss\": {peak}, \"peak_rss_after_touch\": {touched_peak}, \"tensors\": {loaded}, \"checksum\": {checksum}}}",
        if kind == Kind::Float { "f32" } else { "bf16" }
    ))
}

fn main() {
    match run() {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("load-case: {error}");
            std::process::exit(1);
        }
    }
}
