//! A small transformer-shaped model whose layers are slots: `embed` and, in each of two
//! blocks, `attn.{q,k,v}` and `mlp`, all `dim` wide. Each test file gives it the forward
//! it needs.
use tch::nn;
use tch_patch::{ModuleTree, Parameters, Slot};

#[derive(ModuleTree, Parameters)]
pub(crate) struct Attention {
    pub q: Slot<nn::Linear>,
    pub k: Slot<nn::Linear>,
    pub v: Slot<nn::Linear>,
}

#[derive(ModuleTree, Parameters)]
pub(crate) struct Block {
    pub attn: Attention,
    pub mlp: Slot<nn::Linear>,
}

#[derive(ModuleTree, Parameters)]
pub(crate) struct Model {
    pub embed: Slot<nn::Embedding>,
    pub blocks: Vec<Block>,
}

/// The model at the root of `vs`, with an embedding of `vocab` rows.
pub(crate) fn model(vs: &nn::VarStore, vocab: i64, dim: i64) -> Model {
    let root = vs.root();
    let linear = |path: nn::Path| Slot::new(nn::linear(path, dim, dim, Default::default()));
    let blocks = (0..2)
        .map(|i| {
            let p = &root / "blocks" / i;
            Block {
                attn: Attention {
                    q: linear(&p / "attn" / "q"),
                    k: linear(&p / "attn" / "k"),
                    v: linear(&p / "attn" / "v"),
                },
                mlp: linear(&p / "mlp"),
            }
        })
        .collect();
    Model {
        embed: Slot::new(nn::embedding(
            &root / "embed",
            vocab,
            dim,
            Default::default(),
        )),
        blocks,
    }
}
