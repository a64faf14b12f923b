//! The model of the embedding cross-checks (tests/peft_embedding.rs, peft_tokens.rs): an
//! `Embedding(32, 8)` `emb` then a `Linear(8, 8)` `proj`, as slots, loaded from the base
//! weights and token ids `tests/python/emb_proj.py` writes.
use super::peft::read_tensors;
use super::{run_python, TempDir};
use tch::nn;
use tch::{Device, Tensor};
use tch_patch::{ModuleTree, Parameters, Slot};

#[derive(ModuleTree, Parameters)]
pub(crate) struct EmbProj {
    pub emb: Slot<nn::Embedding>,
    pub proj: Slot<nn::Linear>,
}

impl EmbProj {
    pub(crate) fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        ids.apply_t(&self.emb, train).apply_t(&self.proj, train)
    }

    pub(crate) fn eval(&self, ids: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward_t(ids, false))
    }
}

/// The base weights and token ids Python wrote, and the model loaded from them.
pub(crate) struct Base {
    pub dir: TempDir,
    pub vs: nn::VarStore,
    pub model: EmbProj,
    pub ids: Tensor,
}

/// Runs `tests/python/<script> base DIR` in a new folder `name`, then loads what it wrote.
pub(crate) fn base(script: &str, name: &str) -> Base {
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path()).unwrap();
    run_python(script, &["base".as_ref(), dir.path().as_os_str()]);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let model = EmbProj {
        emb: Slot::new(nn::embedding(&root / "emb", 32, 8, Default::default())),
        proj: Slot::new(nn::linear(&root / "proj", 8, 8, Default::default())),
    };
    vs.load(dir.join("base.safetensors")).unwrap();
    let ids = read_tensors(&dir.join("ids.safetensors"))["ids"].shallow_clone();
    Base {
        dir,
        vs,
        model,
        ids,
    }
}
