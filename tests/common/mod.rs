//! Modules and helpers shared by the integration tests: real tch layers, real files.
#![allow(dead_code)]

pub(crate) mod emb_proj;
pub(crate) mod peft;
pub(crate) mod slot_model;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{nn, nn::Module, Tensor};
use tch_patch::{named_tensors, params::Visitor, params::VisitorMut, Parameters};

/// Two linear layers with a ReLU between: tensors `fc1.weight`, `fc1.bias`, `fc2.weight`,
/// `fc2.bias`, at the same names in the VarStore when built at `vs.root()`.
#[derive(Debug)]
pub(crate) struct Mlp {
    pub fc1: nn::Linear,
    pub fc2: nn::Linear,
}

impl Mlp {
    pub(crate) fn new(p: &nn::Path, input: i64, hidden: i64, output: i64) -> Self {
        Mlp {
            fc1: nn::linear(p / "fc1", input, hidden, Default::default()),
            fc2: nn::linear(p / "fc2", hidden, output, Default::default()),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(xs).relu())
    }
}

impl Parameters for Mlp {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.child("fc1", &self.fc1);
        visitor.child("fc2", &self.fc2);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.child("fc1", &mut self.fc1);
        visitor.child("fc2", &mut self.fc2);
    }
}

/// A tiny language model whose output head is tied to its embedding table: `emb.weight` and
/// `head.weight` are one tensor.
#[derive(Debug)]
pub(crate) struct TiedLm {
    pub emb: nn::Embedding,
    pub head: nn::Linear,
}

impl TiedLm {
    pub(crate) fn new(p: &nn::Path, vocab: i64, dim: i64) -> Self {
        let emb = nn::embedding(p / "emb", vocab, dim, Default::default());
        let head = nn::Linear {
            ws: emb.ws.shallow_clone(),
            bs: None,
        };
        TiedLm { emb, head }
    }
}

impl Module for TiedLm {
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.head.forward(&self.emb.forward(ids))
    }
}

impl Parameters for TiedLm {
    fn visit<'a>(&'a self, visitor: &mut Visitor<'a, '_>) {
        visitor.child("emb", &self.emb);
        visitor.child("head", &self.head);
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        visitor.child("emb", &mut self.emb);
        visitor.child("head", &mut self.head);
    }
}

/// Deep copies of every tensor of a module, by name, to compare with later.
pub(crate) fn snapshot<M: Parameters + ?Sized>(module: &M) -> Vec<(String, Tensor)> {
    named_tensors(module)
        .into_iter()
        .map(|t| (t.name, t.tensor.detach().copy()))
        .collect()
}

/// Asserts every tensor of `module` has the name, shape, dtype and values of the snapshot.
pub(crate) fn assert_unchanged<M: Parameters + ?Sized>(module: &M, before: &[(String, Tensor)]) {
    let now = named_tensors(module);
    assert_eq!(now.len(), before.len());
    for (now, (name, was)) in now.iter().zip(before) {
        assert_eq!(&now.name, name);
        assert!(now.tensor.equal(was), "`{name}` changed");
    }
}

/// A file path in the temp folder, unique to this process and call, removed on drop.
pub(crate) struct TempFile(pub PathBuf);

impl TempFile {
    pub(crate) fn new(stem: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tch-patch-{stem}-{}-{n}.safetensors", std::process::id());
        TempFile(std::env::temp_dir().join(name))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A folder path in the temp folder, unique to this process and call, removed (with its
/// contents) on drop. Not created: the code under test creates it.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(stem: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tch-patch-{stem}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tests/python/<script>` with `args` on the repository's libtorch (Python torch of
/// the same build: `PYTHONPATH=<repo>/.libtorch`). Panics if Python cannot start.
pub(crate) fn python<A: AsRef<std::ffi::OsStr>>(script: &str, args: &[A]) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::process::Command::new("python3")
        .arg(repo.join("tests").join("python").join(script))
        .args(args)
        .env("PYTHONPATH", repo.join(".libtorch"))
        // transformers and peft never reach for a model hub: every model is built here.
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .unwrap_or_else(|error| panic!("cannot run python3 for {script}: {error}"))
}

/// [`python`], returning its standard output; panics, failing the test, if the script
/// fails: a cross-check never skips.
pub(crate) fn run_python<A: AsRef<std::ffi::OsStr>>(script: &str, args: &[A]) -> String {
    let output = python(script, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python {script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}
