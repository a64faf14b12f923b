//! Patched modules across threads.
//!
//! tch's `Tensor` is `Send` but not `Sync`: a tensor handle (a C++ `at::Tensor` object) may
//! move to another thread but not be used from two at once. So tch's layers, and our
//! patches of them, are `Send` and not `Sync`; a patch is `Sync` exactly when its parent
//! is. `Parametrized` is never `Sync`: its forward puts the transformed tensors behind the
//! module's own handles for the duration of the call, from `&self`.
//!
//! What we choose, and why:
//! * One model object used from many threads goes behind an `Arc<Mutex<_>>`. An
//!   `Arc<RwLock<_>>` cannot be shared at all (`RwLock<T>: Sync` needs `T: Sync`), so with
//!   tch models the `Mutex` is the reader-writer lock: a writer patching or unpatching
//!   holds it exclusively, as `RwLock::write` would, and readers take turns.
//! * Parallel inference gives each thread its own handles (`shallow_clone`, made on one
//!   thread and sent) to the same storage: no copy of any weight. libtorch supports
//!   concurrent reads of one storage (its reference counts are atomic and forward only
//!   reads the weights; PyTorch's own answer is "safe to read from several threads, not to
//!   write"), and no handle is touched by two threads, which is what `!Sync` forbids.
//!   Writes to shared weights (an optimizer step, `load_safetensors`) must not run at the
//!   same time: put them behind the same lock as the readers or stop the readers first.
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{
    mutable::Mutable, parametrize::MagnitudePrune, parametrize::Parametrized, patch, patch_forward,
    unpatch, Parameters,
};

const THREADS: usize = 8;

/// `<Probe<T>>::SYNC` is true exactly when `T: Sync`: the inherent constant applies only
/// when its bound holds, and the trait's default answers otherwise.
struct Probe<T: ?Sized>(PhantomData<T>);
trait NotSync {
    const SYNC: bool = false;
}
impl<T: ?Sized> NotSync for Probe<T> {}
#[allow(dead_code)] // read through the macro below
impl<T: ?Sized + Sync> Probe<T> {
    const SYNC: bool = true;
}
macro_rules! is_sync {
    ($t:ty) => {
        <Probe<$t>>::SYNC
    };
}

fn assert_send<T: Send>() {}

/// A parent with no tensors, so `Sync`, to show that a patch is `Sync` when its parent is.
#[derive(Debug)]
struct Halve;
impl Module for Halve {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs / 2
    }
}

#[patch(from = Halve)]
struct TracedHalve {}

/// A linear layer scaled by a trainable gain: a patch with a tensor of its own.
#[patch(from = nn::Linear)]
struct Gained {
    #[param]
    gain: Tensor,
}

#[patch_forward]
impl Gained {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.base.forward(xs) * &self.gain
    }
}

#[derive(Debug, Parameters)]
struct Net {
    fc1: Gained,
    fc2: nn::Linear,
}

impl Module for Net {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(xs).tanh())
    }
}

fn linear_replica(l: &nn::Linear) -> nn::Linear {
    nn::Linear {
        ws: l.ws.shallow_clone(),
        bs: l.bs.as_ref().map(Tensor::shallow_clone),
    }
}

impl Net {
    fn new(vs: &nn::VarStore) -> Net {
        let root = vs.root();
        let fc1 = nn::linear(&root / "fc1", 16, 32, Default::default());
        let [gain] = tch_patch::register_tensors(
            &(&root / "fc1"),
            [(
                "gain",
                Tensor::rand([32], (Kind::Float, Device::Cpu)),
                tch_patch::params::TensorRole::Param,
            )],
        )
        .unwrap();
        Net {
            fc1: Gained { base: fc1, gain },
            fc2: nn::linear(&root / "fc2", 32, 4, Default::default()),
        }
    }

    /// The same model with new handles to the same tensors: nothing copied.
    fn replica(&self) -> Net {
        Net {
            fc1: Gained {
                base: linear_replica(&self.fc1.base),
                gain: self.fc1.gain.shallow_clone(),
            },
            fc2: linear_replica(&self.fc2),
        }
    }
}

#[test]
fn patches_are_send_and_sync_exactly_when_their_parent_is() {
    assert_send::<MostlyFrozenEmbedding>();
    assert_send::<Gained>();
    assert_send::<Net>();
    assert_send::<TracedHalve>();
    assert_send::<Parametrized<nn::Linear>>();
    assert_send::<Mutable<nn::Linear>>();
    assert_send::<Arc<Mutex<MostlyFrozenEmbedding>>>();

    // Checked at compile time: a wrong answer fails the build of this test.
    const {
        assert!(!is_sync!(Tensor));
        assert!(is_sync!(MostlyFrozenEmbedding) == is_sync!(nn::Embedding));
        assert!(is_sync!(Gained) == is_sync!(nn::Linear));
        assert!(is_sync!(TracedHalve) == is_sync!(Halve));
        assert!(is_sync!(TracedHalve), "a patch of a Sync parent is Sync");
        assert!(
            !is_sync!(Parametrized<Halve>),
            "forward swaps handles from &self"
        );
        // Why a Mutex and not a RwLock holds a shared model:
        assert!(is_sync!(Mutex<MostlyFrozenEmbedding>));
        assert!(!is_sync!(RwLock<MostlyFrozenEmbedding>));
    }
}

/// Inputs and the single-threaded outputs of `net` for them.
fn reference(net: &Net, count: usize) -> Vec<(Tensor, Tensor)> {
    (0..count)
        .map(|i| {
            tch::manual_seed(i as i64);
            let xs = Tensor::randn([5, 16], (Kind::Float, Device::Cpu));
            let ys = tch::no_grad(|| net.forward(&xs));
            (xs, ys)
        })
        .collect()
}

#[test]
fn eight_threads_share_one_patched_model_behind_a_mutex() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs);
    let expected = reference(&net, THREADS);
    let shared = Arc::new(Mutex::new(net));
    std::thread::scope(|scope| {
        for (xs, want) in expected {
            let shared = Arc::clone(&shared);
            scope.spawn(move || {
                for _ in 0..25 {
                    let got = tch::no_grad(|| shared.lock().unwrap().forward(&xs));
                    assert!(got.equal(&want), "a thread's output differs");
                }
            });
        }
    });
}

#[test]
fn eight_threads_share_one_parametrized_model_behind_a_mutex() {
    // Its forward puts the pruned weight behind the module's handle and back: from any
    // thread holding the lock, and the original is in place between calls.
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 16, 8, Default::default());
    let original = linear.ws.copy();
    let pruned =
        tch_patch::parametrize::parametrize(linear, "weight", MagnitudePrune::new(0.5).unwrap())
            .unwrap();
    let inputs: Vec<Tensor> = (0..THREADS)
        .map(|_| Tensor::randn([3, 16], (Kind::Float, Device::Cpu)))
        .collect();
    let expected: Vec<Tensor> = inputs
        .iter()
        .map(|xs| tch::no_grad(|| pruned.forward(xs)))
        .collect();
    let shared = Arc::new(Mutex::new(pruned));
    std::thread::scope(|scope| {
        for (xs, want) in inputs.into_iter().zip(expected) {
            let (shared, original) = (Arc::clone(&shared), original.copy());
            scope.spawn(move || {
                for _ in 0..25 {
                    let model = shared.lock().unwrap();
                    let got = tch::no_grad(|| model.forward(&xs));
                    assert!(got.equal(&want), "a thread's output differs");
                    assert!(
                        model.original_module().ws.equal(&original),
                        "the original is back after forward"
                    );
                }
            });
        }
    });
}

#[test]
fn eight_threads_run_replicas_sharing_every_weight_in_parallel() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs);
    let expected = reference(&net, THREADS);
    let replicas: Vec<Net> = (0..THREADS).map(|_| net.replica()).collect();
    for replica in &replicas {
        let pairs = tch_patch::named_tensors(replica)
            .into_iter()
            .zip(tch_patch::named_tensors(&net));
        for (theirs, ours) in pairs {
            assert_eq!(theirs.tensor.data_ptr(), ours.tensor.data_ptr(), "no copy");
        }
    }
    std::thread::scope(|scope| {
        for (replica, (xs, want)) in replicas.into_iter().zip(expected) {
            scope.spawn(move || {
                for _ in 0..25 {
                    let got = tch::no_grad(|| replica.forward(&xs));
                    assert!(got.equal(&want), "a thread's output differs");
                }
            });
        }
    });
}

/// The embedding, plain or patched: what the lock holds.
enum Model {
    Plain(nn::Embedding),
    Patched(MostlyFrozenEmbedding),
}

impl Model {
    fn forward(&self, xs: &Tensor) -> Tensor {
        match self {
            Model::Plain(m) => m.forward(xs),
            Model::Patched(m) => m.forward(xs),
        }
    }
}

struct Shared {
    vs: nn::VarStore,
    model: Option<Model>,
    /// Reads since the last swap, so the writer lets every state be seen.
    reads: usize,
}

/// Patches `emb` with trainable rows 1 and 2, their delta set to one, in one step.
fn patched(emb: nn::Embedding, vs: &nn::VarStore) -> MostlyFrozenEmbedding {
    let patch = MostlyFrozenEmbedding::from_existing(emb, &(vs.root() / "emb"), &[1, 2]).unwrap();
    let _ = tch::no_grad(|| patch.delta().shallow_clone().fill_(1.0));
    patch
}

#[test]
fn readers_see_the_plain_or_the_patched_model_never_a_mix() {
    const SWAPS: usize = 100;
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let emb = nn::embedding(vs.root() / "emb", 10, 6, Default::default());
    let xs = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let plain_out = emb.forward(&xs);
    let patch = patched(emb, &vs);
    let patched_out = patch.forward(&xs).detach();
    assert!(!plain_out.equal(&patched_out));
    let emb = unpatch(patch, &vs);
    assert!(emb.forward(&xs).equal(&plain_out));

    let shared = Arc::new(Mutex::new(Shared {
        vs,
        model: Some(Model::Plain(emb)),
        reads: 0,
    }));
    let done = Arc::new(AtomicBool::new(false));
    let seen = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let (shared, done, seen) = (Arc::clone(&shared), Arc::clone(&done), seen.clone());
            let (xs, plain_out, patched_out) = (xs.copy(), plain_out.copy(), patched_out.copy());
            scope.spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let ys = {
                        let mut state = shared.lock().unwrap();
                        state.reads += 1;
                        let model = state.model.as_ref().expect("never taken while locked");
                        tch::no_grad(|| model.forward(&xs))
                    };
                    if ys.equal(&plain_out) {
                        seen[0].fetch_add(1, Ordering::Relaxed);
                    } else if ys.equal(&patched_out) {
                        seen[1].fetch_add(1, Ordering::Relaxed);
                    } else {
                        panic!("a reader saw a half-patched model: {ys}");
                    }
                }
            });
        }
        let writer = {
            let (shared, done) = (Arc::clone(&shared), Arc::clone(&done));
            scope.spawn(move || {
                let mut swaps = 0;
                while swaps < SWAPS {
                    let mut guard = shared.lock().unwrap();
                    if guard.reads == 0 {
                        drop(guard);
                        std::thread::yield_now();
                        continue;
                    }
                    let state = &mut *guard;
                    state.model = Some(match state.model.take().unwrap() {
                        Model::Plain(emb) => Model::Patched(patched(emb, &state.vs)),
                        Model::Patched(patch) => Model::Plain(unpatch(patch, &state.vs)),
                    });
                    state.reads = 0;
                    swaps += 1;
                }
                done.store(true, Ordering::Release);
            })
        };
        writer.join().unwrap();
    });
    let (plain_reads, patched_reads) = (
        seen[0].load(Ordering::Relaxed),
        seen[1].load(Ordering::Relaxed),
    );
    assert!(
        plain_reads > 0 && patched_reads > 0,
        "{plain_reads} plain, {patched_reads} patched"
    );
    // After an even number of swaps the model is plain again, with only its own variable.
    let state = shared.lock().unwrap();
    assert!(matches!(state.model, Some(Model::Plain(_))));
    let names: Vec<String> = state.vs.variables().into_keys().collect();
    assert_eq!(names, ["emb.weight"]);
}
