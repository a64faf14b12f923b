//! The model every case runs against: an embedding, two linear layers and a head tied to
//! the embedding, all in one VarStore, plus a folder holding a valid checkpoint of it.
//! Cases of slots and rules also get a module tree ([`TreeNet`]) in the same VarStore.
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{nn, Device, Kind, Tensor};
use tch_patch::tree::Node;
use tch_patch::{layers, named_tensors, save::save_module, ModuleTree, Parameters, Slot};

pub(crate) const VOCAB: i64 = 16;
pub(crate) const DIM: i64 = 4;
pub(crate) const HIDDEN: i64 = 8;

/// `emb.weight [16, 4]`, `fc1.weight [8, 4]`, `fc1.bias [8]`, `fc2.weight [4, 8]`,
/// `fc2.bias [4]`, and `head.weight`, which is `emb.weight` (tied).
#[derive(Parameters)]
pub struct Net {
    pub emb: nn::Embedding,
    pub fc1: nn::Linear,
    pub fc2: nn::Linear,
    pub head: nn::Linear,
}

/// A fresh folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tch-patch-bad-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One block of [`TreeNet`]: two linear slots.
#[derive(ModuleTree, Parameters)]
pub struct Block {
    pub q: Slot<nn::Linear>,
    pub v: Slot<nn::Linear>,
}

/// A module tree: `emb` (an embedding slot), `blocks.{0,1,2}.{q,v}` (linear slots `[4, 4]`)
/// and `head`, a linear slot whose weight is `emb.weight` (tied). Its variables live in the
/// fixture's VarStore under `tree.`.
#[derive(ModuleTree, Parameters)]
pub struct TreeNet {
    pub emb: Slot<nn::Embedding>,
    pub blocks: Vec<Block>,
    pub head: Slot<nn::Linear>,
}

/// The VarStore folder of [`TreeNet`]'s variables.
pub(crate) const TREE: &str = "tree";

impl TreeNet {
    /// A fresh tree with its variables in `vs` under [`TREE`].
    pub fn new(vs: &nn::VarStore) -> Self {
        let root = vs.root() / TREE;
        let emb = nn::embedding(&root / "emb", VOCAB, DIM, Default::default());
        let head = nn::Linear {
            ws: emb.ws.shallow_clone(),
            bs: None,
        };
        let linear = |path: nn::Path| Slot::new(nn::linear(path, DIM, DIM, Default::default()));
        TreeNet {
            emb: Slot::new(emb),
            blocks: (0..3)
                .map(|i| Block {
                    q: linear(&root / "blocks" / i / "q"),
                    v: linear(&root / "blocks" / i / "v"),
                })
                .collect(),
            head: Slot::new(head),
        }
    }
}

/// A symbolic model: `emb` (Embedding 16 -> 4), then `body`: a sequence of Linear 4 -> 8,
/// ReLU, a nested sequence (Linear 8 -> 8, Dropout 0.1), LayerNorm [8], GELU, Linear
/// 8 -> 4; every child a replaceable node. Its variables live under `seq.`.
#[derive(ModuleTree, Parameters)]
pub struct SeqNet {
    pub emb: Node,
    pub body: layers::Sequential,
}

impl SeqNet {
    pub fn new(vs: &nn::VarStore) -> Self {
        let root = vs.root() / "seq";
        let body = &root / "body";
        SeqNet {
            emb: Node::new(nn::embedding(&root / "emb", VOCAB, DIM, Default::default())),
            body: layers::seq()
                .add(nn::linear(&body / 0, DIM, HIDDEN, Default::default()))
                .add(layers::Relu)
                .add(
                    layers::seq()
                        .add(nn::linear(
                            &body / 2 / 0,
                            HIDDEN,
                            HIDDEN,
                            Default::default(),
                        ))
                        .add(layers::dropout(0.1)),
                )
                .add(nn::layer_norm(&body / 3, vec![HIDDEN], Default::default()))
                .add(layers::Gelu::default())
                .add(nn::linear(&body / 5, HIDDEN, DIM, Default::default())),
        }
    }

    /// Each node's path and the type it holds: a failed replacement must leave these.
    pub fn node_types(&mut self) -> Vec<(String, &'static str, usize)> {
        use tch_patch::tree::ModuleTreeExt;
        let mut seen = Vec::new();
        self.nodes_mut(|path, node| {
            seen.push((path.to_owned(), node.type_name(), node.changes()));
            false
        });
        seen
    }
}

pub struct Fixture {
    pub vs: nn::VarStore,
    /// `None` once a case moved it into a call.
    pub net: Option<Net>,
    /// A module tree, made by [`Fixture::with_tree`] in a case's setup.
    pub tree: Option<TreeNet>,
    /// A symbolic model, made by [`Fixture::with_seq`] in a case's setup.
    pub seq: Option<SeqNet>,
    pub dir: TempDir,
    /// A valid checkpoint of `net` (unprefixed names), written with `save_module`.
    pub checkpoint: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let emb = nn::embedding(&root / "emb", VOCAB, DIM, Default::default());
        let head = nn::Linear {
            ws: emb.ws.shallow_clone(),
            bs: None,
        };
        let net = Net {
            emb,
            fc1: nn::linear(&root / "fc1", DIM, HIDDEN, Default::default()),
            fc2: nn::linear(&root / "fc2", HIDDEN, DIM, Default::default()),
            head,
        };
        let dir = TempDir::new();
        let checkpoint = dir.0.join("net.safetensors");
        save_module(&net, &checkpoint, "").unwrap();
        Fixture {
            vs,
            net: Some(net),
            tree: None,
            seq: None,
            dir,
            checkpoint,
        }
    }

    pub fn net(&mut self) -> &mut Net {
        self.net.as_mut().expect("the net is still here")
    }

    pub fn take_net(&mut self) -> Net {
        self.net.take().expect("the net is still here")
    }

    /// Builds the fixture's [`TreeNet`] (its variables go in the VarStore).
    pub fn with_tree(&mut self) -> &mut TreeNet {
        let tree = TreeNet::new(&self.vs);
        self.tree.insert(tree)
    }

    /// The tree made by [`with_tree`](Self::with_tree).
    pub fn tree(&mut self) -> &mut TreeNet {
        self.tree.as_mut().expect("the case's setup made the tree")
    }

    /// Builds the fixture's [`SeqNet`] (its variables go in the VarStore).
    pub fn with_seq(&mut self) -> &mut SeqNet {
        let seq = SeqNet::new(&self.vs);
        self.seq.insert(seq)
    }

    /// The symbolic model made by [`with_seq`](Self::with_seq).
    pub fn seq(&mut self) -> &mut SeqNet {
        self.seq
            .as_mut()
            .expect("the case's setup made the symbolic model")
    }

    /// A path in the fixture's folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Writes the net's tensors to `name`, with `change` applied to the list first.
    pub fn write_checkpoint(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Vec<(String, Tensor)>),
    ) -> PathBuf {
        let mut entries: Vec<(String, Tensor)> = named_tensors(self.net())
            .into_iter()
            .map(|t| (t.name, t.tensor.detach().copy()))
            .collect();
        change(&mut entries);
        let path = self.file(name);
        Tensor::write_safetensors(&entries, &path).unwrap();
        path
    }

    /// Writes raw bytes to `name`.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// Replaces the value of `name` in a checkpoint's entries.
pub(crate) fn set_entry(entries: &mut [(String, Tensor)], name: &str, value: Tensor) {
    let entry = entries
        .iter_mut()
        .find(|(n, _)| n == name)
        .expect("a known name");
    entry.1 = value;
}

pub(crate) fn floats(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}
