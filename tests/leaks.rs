//! No leaks: patch and unpatch a model 10,000 times; the process's memory must not grow.
//!
//! Two measures, both taken after a warm-up (libtorch's and the allocator's first-use
//! caches, the VarStore's hash map reaching its size):
//! * resident memory, from `/proc/self/statm`;
//! * bytes in use on the C heap (glibc's `mallinfo2`: `uordblks + hblkhd`). libtorch's
//!   CPU allocator takes tensor memory from there (`posix_memalign`), so this is the
//!   nearest to "libtorch's allocated CPU memory": libtorch keeps no CPU allocation
//!   statistics outside its profiler, and tch exposes none.
//!
//! Bounds, chosen from measurement (debug build, 2-core VM under load): over 10,000
//! cycles after the warm-up, the C heap in use moved by at most 2.5 KiB and resident
//! memory by at most 48 KiB, in every test. A leak of the smallest tensor there is (a
//! 2-element int64 tensor, `mem::forget`ed once per cycle) grows the C heap by 4.0 MB
//! (about 400 bytes per cycle: handle, `TensorImpl`, storage, data). So the heap bound,
//! 1 MiB, catches a leak of any tensor per cycle with a 400x margin over the noise; the
//! resident bound, 8 MiB, is the coarser net (pages are returned to the OS lazily) and
//! also catches leaks outside the C heap (e.g. `mmap`ed large tensors).
//!
//! The tests take a lock so that they measure one at a time (the harness runs tests of one
//! file on several threads, and memory is per process).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::sync::Mutex;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use tch_patch::patches::MostlyFrozenEmbedding;
use tch_patch::{
    functional::functional_call, functional::Strictness, load::load_safetensors, load::LoadOptions,
    parametrize::parametrize, parametrize::MagnitudePrune, parametrize::Parametrized,
    parametrize::Removal, parametrize::WeightNorm, save::save_module, unpatch,
};

const CYCLES: usize = 10_000;
const WARM_UP: usize = 500;
/// Growth allowed of the C heap in use over the 10,000 cycles (see the file's comment).
const HEAP_BOUND: i64 = 1 << 20;
/// Growth allowed of resident memory over the 10,000 cycles (see the file's comment).
const RSS_BOUND: i64 = 8 << 20;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// (resident bytes, C heap bytes in use).
fn memory() -> (i64, i64) {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf and mallinfo2 only read process state.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64;
    // SAFETY: as above.
    let info = unsafe { libc::mallinfo2() };
    (pages * page, (info.uordblks + info.hblkhd) as i64)
}

/// Runs `cycle` WARM_UP times, then CYCLES times, and checks the growth in between.
fn assert_no_growth(what: &str, mut cycle: impl FnMut(usize)) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // One intra-op thread: what is measured is memory, and on a busy machine OpenMP's
    // spinning worker threads make each small parallel op (the pruning mask's argsort)
    // cost milliseconds. Affects this test binary only.
    tch::set_num_threads(1);
    for i in 0..WARM_UP {
        cycle(i);
    }
    let (rss0, heap0) = memory();
    for i in 0..CYCLES {
        cycle(i);
    }
    let (rss1, heap1) = memory();
    let (rss, heap) = (rss1 - rss0, heap1 - heap0);
    eprintln!("{what}: {CYCLES} cycles, resident {rss:+} bytes, C heap in use {heap:+} bytes");
    assert!(heap < HEAP_BOUND, "{what}: the C heap grew by {heap} bytes");
    assert!(
        rss < RSS_BOUND,
        "{what}: resident memory grew by {rss} bytes"
    );
}

#[test]
fn mostly_frozen_embedding_patch_and_unpatch() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "emb";
    // A 256 x 64 float table (64 KiB); each patch adds a [16, 64] delta (4 KiB) and ids.
    let mut emb = Some(nn::embedding(&path, 256, 64, Default::default()));
    let ids: Vec<i64> = (0..16).map(|i| i * 7).collect();
    let xs = Tensor::from_slice(&[0i64, 7, 14, 200]);
    let expected = emb.as_ref().unwrap().forward(&xs);
    assert_no_growth("MostlyFrozenEmbedding", |_| {
        let patch = MostlyFrozenEmbedding::from_existing(emb.take().unwrap(), &path, &ids).unwrap();
        let ys = patch.forward(&xs);
        assert!(ys.equal(&expected));
        emb = Some(unpatch(patch, &vs));
    });
    assert_eq!(vs.variables().len(), 1, "only the table is left");
}

#[test]
fn parametrize_and_remove() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "fc";
    // A 64 x 64 weight (16 KiB); each cycle computes a mask of the same size.
    let mut linear = Some(nn::linear(&path, 64, 64, Default::default()));
    let xs = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
    let before = linear.as_ref().unwrap().ws.copy();
    assert_no_growth("parametrize + remove", |_| {
        let pruned = parametrize(
            linear.take().unwrap(),
            "weight",
            MagnitudePrune::new(0.5).unwrap(),
        )
        .unwrap();
        let ys = pruned.try_forward(&xs).unwrap();
        assert_eq!(ys.size(), [2, 64]);
        linear = Some(pruned.remove(Removal::KeepOriginal).unwrap());
    });
    assert!(linear.unwrap().ws.equal(&before));
}

#[test]
fn weight_norm_registered_and_removed_from_the_var_store() {
    let vs = nn::VarStore::new(Device::Cpu);
    let path = vs.root() / "fc";
    let mut linear = Some(nn::linear(&path, 64, 64, Default::default()));
    let xs = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
    assert_no_growth("weight norm + remove_from", |_| {
        let mut normed = Parametrized::new(linear.take().unwrap());
        normed
            .push_registered(&path, "weight", WeightNorm::new(0))
            .unwrap();
        let ys = normed.cached(|m| m.try_forward(&xs).unwrap());
        ys.sum(Kind::Float).backward();
        linear = Some(normed.remove_from(&vs, Removal::KeepOriginal).unwrap());
        let mut ws = linear.as_ref().unwrap().ws.shallow_clone();
        ws.zero_grad();
    });
    assert_eq!(vs.variables().len(), 2, "fc.weight and fc.bias only");
}

#[test]
fn refused_inputs_leak_nothing_either() {
    // Error paths allocate too (file bytes, parsed tensors, the problem list): a good load,
    // a load of a truncated file, a load with a wrong shape and a refused functional call
    // per cycle.
    let dir = std::env::temp_dir();
    let name = |what: &str| {
        dir.join(format!(
            "tch-patch-leaks-{what}-{}.safetensors",
            std::process::id()
        ))
    };
    let (good, truncated, misfit) = (name("good"), name("truncated"), name("misfit"));
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 32, 32, Default::default());
    save_module(&linear, &good, "").unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let wrong = Tensor::zeros([32, 16], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("weight", &wrong), ("bias", &wrong)], &misfit).unwrap();
    let options = LoadOptions::new();
    assert_no_growth("loads and calls, good and refused", |_| {
        load_safetensors(&mut linear, &good, &options).unwrap();
        assert!(load_safetensors(&mut linear, &truncated, &options).is_err());
        assert!(load_safetensors(&mut linear, &misfit, &options).is_err());
        let refused = functional_call(
            &mut linear,
            [("weight", &wrong)],
            Strictness::Strict,
            |_| (),
        );
        assert!(refused.is_err());
    });
    for path in [good, truncated, misfit] {
        std::fs::remove_file(path).unwrap();
    }
}
