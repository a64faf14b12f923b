//! What the cross-checks against transformers share.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::Tensor;

/// A folder in the temp folder, unique to this process and call, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(stem: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tch-patch-models-{stem}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tests/python/<script>` on the repository's libtorch and its pinned transformers.
pub(crate) fn run_python(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new("python3")
        .arg(package.join("tests").join("python").join(script))
        .args(args)
        .env("PYTHONPATH", package.join("..").join(".libtorch"))
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .expect("python3 starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The largest absolute difference of two tensors.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The tensors of a safetensors file, by name.
pub(crate) fn read(path: &Path) -> impl Fn(&str) -> Tensor {
    let tensors = Tensor::read_safetensors(path).unwrap();
    move |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
            .shallow_clone()
    }
}

/// Applies the patch string `patches` to `model` (its base frozen by the caller) and trains the
/// patches for 5 Adam steps on next-token prediction of `ids`' first 11 tokens; the specs.
pub(crate) fn train_lora<M>(
    model: &mut M,
    vs: &tch::nn::VarStore,
    patches: &str,
    ids: &Tensor,
) -> Vec<tch_patch::registry::PatchSpec>
where
    M: tch_patch_models::decoding::CausalLm + tch_patch::ModuleTree,
{
    use tch::nn::OptimizerConfig;
    let specs = tch_patch::registry::Registry::global()
        .unwrap()
        .parse(patches)
        .unwrap();
    tch_patch::registry::apply_specs(model, vs, &specs).unwrap();
    let mut opt = tch::nn::Adam::default().build(vs, 1e-2).unwrap();
    for _ in 0..5 {
        let logits = model.logits(&ids.narrow(1, 0, 10), true);
        let vocab = logits.size()[2];
        let loss = logits
            .view([-1, vocab])
            .cross_entropy_for_logits(&ids.narrow(1, 1, 10).reshape([-1]));
        opt.backward_step(&loss);
    }
    specs
}
