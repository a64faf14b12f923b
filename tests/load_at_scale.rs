//! Loading at scale (reference 004): streaming loads, assign and mapped modes, skeletons
//! that cost nothing, sharded checkpoints, hooks that change a tensor's representation,
//! and `swap_tensors`.
mod common;

use common::{Mlp, TempDir, TempFile};
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
use tch_patch::load::{
    self, load_safetensors, load_safetensors_with, load_sharded, HookOutput, LoadError, LoadMode,
    LoadOptions, Skeleton,
};
use tch_patch::params::{TensorProblem, TensorRole};
use tch_patch::swap::{swap_tensors, SwapError};
use tch_patch::{named_tensors, Parameters, PatchError};

fn saved_mlp(file: &TempFile) -> Mlp {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), 3, 4, 2);
    vs.save(file.path()).unwrap();
    mlp
}

/// `(name, data_ptr, values)` of every tensor: what "nothing changed" compares.
fn fingerprint<M: Parameters>(module: &M) -> Vec<(String, usize, Vec<f64>)> {
    named_tensors(module)
        .into_iter()
        .map(|t| {
            let values =
                Vec::<f64>::try_from(t.tensor.to_kind(Kind::Double).flatten(0, -1)).unwrap();
            (t.name, t.tensor.data_ptr() as usize, values)
        })
        .collect()
}

fn skeleton_mlp(vs: &nn::VarStore) -> Skeleton<Mlp> {
    Skeleton::build(vs, |fill| Mlp {
        fc1: load::linear(&(vs.root() / "fc1"), 3, 4, Default::default(), fill),
        fc2: load::linear(&(vs.root() / "fc2"), 4, 2, Default::default(), fill),
    })
}

#[test]
fn a_streaming_copy_keeps_every_tensor_object_and_reads_straight_into_it() {
    let file = TempFile::new("stream");
    let source = saved_mlp(&file);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let before: Vec<usize> = named_tensors(&mlp)
        .iter()
        .map(|t| t.tensor.data_ptr() as usize)
        .collect();
    let report = load_safetensors(&mut mlp, file.path(), &LoadOptions::new()).unwrap();
    assert_eq!(report.loaded.len(), 4);
    let after: Vec<usize> = named_tensors(&mlp)
        .iter()
        .map(|t| t.tensor.data_ptr() as usize)
        .collect();
    assert_eq!(
        before, after,
        "the values went into the module's own memory"
    );
    assert!(mlp.fc2.ws.equal(&source.fc2.ws));
    assert!(vs.variables()["fc1.weight"].equal(&source.fc1.ws));
}

#[test]
fn convert_dtype_converts_floats_only_when_asked() {
    let file = TempFile::new("convert");
    let w = Tensor::randn([2, 3], (Kind::Double, Device::Cpu));
    let b = Tensor::randn([2], (Kind::Double, Device::Cpu));
    Tensor::write_safetensors(&[("weight", &w), ("bias", &b)], file.path()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    let before = fingerprint(&linear);
    let err = load_safetensors(&mut linear, file.path(), &LoadOptions::new()).unwrap_err();
    assert!(
        matches!(&err, LoadError::InvalidTensors { problems, .. } if problems.len() == 2
            && problems.iter().all(|p| matches!(p, TensorProblem::Kind { actual: Kind::Double, expected: Kind::Float, .. }))),
        "{err}"
    );
    assert_eq!(fingerprint(&linear), before);
    load_safetensors(
        &mut linear,
        file.path(),
        &LoadOptions::new().convert_dtype(true),
    )
    .unwrap();
    assert!(linear.ws.equal(&w.to_kind(Kind::Float)));

    let ints = TempFile::new("convert-int");
    let i = Tensor::ones([2, 3], (Kind::Int64, Device::Cpu));
    Tensor::write_safetensors(&[("weight", &i), ("bias", &b)], ints.path()).unwrap();
    let err = load_safetensors(
        &mut linear,
        ints.path(),
        &LoadOptions::new().convert_dtype(true),
    )
    .unwrap_err();
    assert!(err.to_string().contains("weight"), "{err}");
}

#[test]
fn assign_gives_the_module_the_files_tensors_with_their_shapes_and_dtypes() {
    let file = TempFile::new("assign");
    let w = Tensor::randn([5, 3], (Kind::Double, Device::Cpu));
    let b = Tensor::randn([5], (Kind::Double, Device::Cpu));
    Tensor::write_safetensors(&[("weight", &w), ("bias", &b)], file.path()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    let opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    load_safetensors(
        &mut linear,
        file.path(),
        &LoadOptions::new().mode(LoadMode::Assign),
    )
    .unwrap();
    assert_eq!(linear.ws.size(), [5, 3]);
    assert_eq!(linear.ws.kind(), Kind::Double);
    assert!(linear.ws.equal(&w));
    assert!(
        vs.variables()["weight"].is_set_to(&linear.ws),
        "the VarStore holds the same tensor"
    );
    assert!(vs
        .trainable_variables()
        .iter()
        .any(|t| t.is_set_to(&linear.ws)));
    assert!(linear.ws.requires_grad());
    drop(opt);

    // An integer tensor cannot become a tensor that requires grad: refused, nothing changed.
    let ints = TempFile::new("assign-int");
    let i = Tensor::ones([5, 3], (Kind::Int64, Device::Cpu));
    Tensor::write_safetensors(&[("weight", &i), ("bias", &b)], ints.path()).unwrap();
    let before = fingerprint(&linear);
    let err = load_safetensors(
        &mut linear,
        ints.path(),
        &LoadOptions::new().mode(LoadMode::Assign),
    )
    .unwrap_err();
    assert!(
        matches!(&err, LoadError::InvalidTensors { problems, .. }
            if matches!(problems[..], [TensorProblem::NotDifferentiable { .. }])),
        "{err}"
    );
    assert_eq!(fingerprint(&linear), before);
}

#[test]
fn a_skeleton_is_filled_by_a_load_and_refuses_to_leave_a_tensor_unwritten() {
    let file = TempFile::new("skeleton");
    let source = saved_mlp(&file);
    for mode in [LoadMode::Copy, LoadMode::Assign, LoadMode::Map] {
        let vs = nn::VarStore::new(Device::Cpu);
        let skeleton = skeleton_mlp(&vs);
        assert_eq!(skeleton.shapes()[0], ("fc1.weight".to_owned(), vec![4, 3]));
        let mlp = skeleton
            .load(file.path(), &LoadOptions::new().mode(mode))
            .unwrap();
        let xs = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
        assert!(mlp.forward(&xs).equal(&source.forward(&xs)), "{mode:?}");
        assert!(vs.variables()["fc2.bias"].is_set_to(mlp.fc2.bs.as_ref().unwrap()));
    }
    // A file without fc2: even with allow_missing, the skeleton is refused.
    let partial = TempFile::new("skeleton-partial");
    Tensor::write_safetensors(
        &[
            ("fc1.weight", &source.fc1.ws),
            ("fc1.bias", source.fc1.bs.as_ref().unwrap()),
        ],
        partial.path(),
    )
    .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let err = skeleton_mlp(&vs)
        .load(partial.path(), &LoadOptions::new().allow_missing(true))
        .err()
        .unwrap();
    assert!(err.to_string().contains("`fc2.weight` is missing"), "{err}");
    assert!(
        vs.variables().is_empty(),
        "the failed skeleton's tensors left the VarStore"
    );
}

#[test]
fn a_mapped_load_views_the_files_pages_and_never_writes_the_file() {
    let file = TempFile::new("map");
    let source = saved_mlp(&file);
    let bytes = std::fs::read(file.path()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let report = load_safetensors(
        &mut mlp,
        file.path(),
        &LoadOptions::new().mode(LoadMode::Map),
    )
    .unwrap();
    assert_eq!(
        report.mapped.len(),
        4,
        "every tensor of an aligned file is mapped"
    );
    assert!(mlp.fc1.ws.equal(&source.fc1.ws));
    // Writes go to private copies of the pages: the file stays as it was.
    let _ = tch::no_grad(|| mlp.fc1.ws.fill_(3.0));
    assert_eq!(std::fs::read(file.path()).unwrap(), bytes);
    // The mapping lives as long as the tensors, even after the file is gone.
    std::fs::remove_file(file.path()).unwrap();
    assert!(mlp.fc2.ws.equal(&source.fc2.ws));
}

#[test]
fn a_hook_may_turn_one_file_tensor_into_several_module_tensors() {
    /// A weight held as int8 plus a per-row scale: a representation the file does not have.
    struct Quantized {
        weight: Tensor,
        scale: Tensor,
    }
    impl Parameters for Quantized {
        fn visit<'a>(&'a self, visitor: &mut tch_patch::params::Visitor<'a, '_>) {
            visitor.tensor("weight", &self.weight, TensorRole::Buffer);
            visitor.tensor("scale", &self.scale, TensorRole::Buffer);
        }
        fn visit_mut(&mut self, visitor: &mut tch_patch::params::VisitorMut<'_>) {
            visitor.tensor("weight", &mut self.weight, TensorRole::Buffer);
            visitor.tensor("scale", &mut self.scale, TensorRole::Buffer);
        }
    }
    let file = TempFile::new("hook-many");
    let w = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("weight", &w)], file.path()).unwrap();
    let mut module = Quantized {
        weight: Tensor::zeros([4, 8], (Kind::Float, Device::Cpu)),
        scale: Tensor::zeros([4], (Kind::Float, Device::Cpu)),
    };
    let weight_object = module.weight.shallow_clone();
    load_safetensors_with(
        &mut module,
        file.path(),
        &LoadOptions::new().mode(LoadMode::Assign),
        |name, w| {
            assert_eq!(name, "weight");
            let scale = w.abs().amax([1].as_slice(), false) / 127.0;
            let q = (&w / scale.unsqueeze(1)).round().to_kind(Kind::Int8);
            Ok::<_, PatchError>(HookOutput::from(vec![
                ("weight".to_owned(), q),
                ("scale".to_owned(), scale),
            ]))
        },
    )
    .unwrap();
    assert_eq!(module.weight.kind(), Kind::Int8);
    assert!(
        weight_object.is_set_to(&module.weight),
        "the same tensor object, new data"
    );
    let back = module.weight.to_kind(Kind::Float) * module.scale.unsqueeze(1);
    assert!(
        (back - &w).abs().max().double_value(&[])
            <= module.scale.max().double_value(&[]) / 2.0 + 1e-6
    );
}

#[test]
fn a_sharded_checkpoint_streams_shard_by_shard_and_its_index_is_checked() {
    let dir = TempDir::new("shards");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = TempFile::new("shards-source");
    let source = saved_mlp(&file);
    let (b1, b2) = (
        source.fc1.bs.as_ref().unwrap(),
        source.fc2.bs.as_ref().unwrap(),
    );
    Tensor::write_safetensors(
        &[("fc1.weight", &source.fc1.ws), ("fc1.bias", b1)],
        dir.path().join("a.safetensors"),
    )
    .unwrap();
    Tensor::write_safetensors(
        &[("fc2.weight", &source.fc2.ws), ("fc2.bias", b2)],
        dir.path().join("b.safetensors"),
    )
    .unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    let write_index =
        |map: &str| std::fs::write(&index, format!(r#"{{"weight_map": {{{map}}}}}"#)).unwrap();
    let good = r#""fc1.weight": "a.safetensors", "fc1.bias": "a.safetensors", "fc2.weight": "b.safetensors", "fc2.bias": "b.safetensors""#;
    write_index(good);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut mlp = Mlp::new(&vs.root(), 3, 4, 2);
    let before = fingerprint(&mlp);
    load_sharded(&mut mlp, &index, &LoadOptions::new()).unwrap();
    assert!(mlp.fc2.ws.equal(&source.fc2.ws));

    let cases = [
        (
            good.replace("b.safetensors", "c.safetensors"),
            "names shard \"c.safetensors\"",
        ),
        (
            good.replace(
                r#""fc2.bias": "b.safetensors""#,
                r#""fc2.bias": "a.safetensors""#,
            ),
            "places `fc2.bias` in \"a.safetensors\"",
        ),
        (
            good.replace(r#", "fc2.bias": "b.safetensors""#, ""),
            "holds `fc2.bias`, which the index does not place",
        ),
        (
            good.replace("a.safetensors", "../a.safetensors"),
            "is not a file of the folder",
        ),
    ];
    for (map, message) in cases {
        write_index(&map);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut fresh = Mlp::new(&vs.root(), 3, 4, 2);
        let untouched = fingerprint(&fresh);
        let err = load_sharded(&mut fresh, &index, &LoadOptions::new()).unwrap_err();
        assert!(
            matches!(err, LoadError::Index { .. }) && err.to_string().contains(message),
            "{err}"
        );
        assert_eq!(fingerprint(&fresh), untouched);
    }
    // A shard whose tensor has another shape: every problem named, nothing changed.
    write_index(good);
    let wide = Tensor::zeros([2, 9], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(
        &[("fc2.weight", &wide), ("fc2.bias", b2)],
        dir.path().join("b.safetensors"),
    )
    .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut fresh = Mlp::new(&vs.root(), 3, 4, 2);
    let untouched = fingerprint(&fresh);
    let err = load_sharded(&mut fresh, &index, &LoadOptions::new()).unwrap_err();
    assert!(err.to_string().contains("fc2.weight"), "{err}");
    assert_eq!(fingerprint(&fresh), untouched);
    drop(before);
}

#[test]
fn swap_tensors_trades_data_grad_and_requires_grad_and_every_holder_sees_it() {
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 3, 2, Default::default());
    let mut opt = nn::Adam::default().build(&vs, 0.1).unwrap();
    let xs = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    linear.forward(&xs).sum(Kind::Float).backward();
    opt.step();

    let other = Tensor::randn([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    (&other * 2.0).sum(Kind::Float).backward();
    let (old_w, old_other) = (linear.ws.detach().copy(), other.detach().copy());
    let (grad_w, grad_other) = (linear.ws.grad().copy(), other.grad().copy());
    swap_tensors(&linear.ws, &other).unwrap();
    assert!(
        vs.variables()["weight"].equal(&old_other),
        "the VarStore sees the swap"
    );
    assert!(other.equal(&old_w));
    assert!(linear.ws.grad().equal(&grad_other) && other.grad().equal(&grad_w));
    // Both ways: swapping back restores everything.
    swap_tensors(&linear.ws, &other).unwrap();
    assert!(linear.ws.equal(&old_w) && linear.ws.grad().equal(&grad_w));
    // The optimizer still trains the VarStore's tensor.
    opt.zero_grad();
    linear.forward(&xs).sum(Kind::Float).backward();
    opt.step();
    assert!(!linear.ws.equal(&old_w));

    let computed = &linear.ws * 2.0;
    let fresh = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
    let before = linear.ws.detach().copy();
    assert!(matches!(
        swap_tensors(&computed, &linear.ws),
        Err(SwapError::NotLeaf { which: "first" })
    ));
    assert!(matches!(
        swap_tensors(&linear.ws, &fresh),
        Err(SwapError::GradOnOneSide { which: "first" })
    ));
    assert!(matches!(
        swap_tensors(&fresh, &Tensor::new()),
        Err(SwapError::Undefined { which: "second" })
    ));
    assert!(
        linear.ws.equal(&before) && fresh.equal(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)))
    );
}

/// This process's resident memory, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Run in a child process of its own (so that nothing else moves its memory): a skeleton
/// of 256 MiB of weights costs no resident memory; tch's own layers cost all of it.
#[test]
fn a_skeleton_touches_no_page_until_it_is_loaded() {
    const CHILD: &str = "TCH_PATCH_SKELETON_CHILD";
    const LAYERS: i64 = 16;
    const HIDDEN: i64 = 2048; // 16 MiB of f32 each
    let model_bytes = (LAYERS * HIDDEN * HIDDEN * 4) as u64;
    if let Ok(which) = std::env::var(CHILD) {
        let vs = nn::VarStore::new(Device::Cpu);
        let before = resident();
        let layers: Vec<nn::Linear> = if which == "skeleton" {
            let skeleton = Skeleton::build(&vs, |fill| {
                (0..LAYERS)
                    .map(|i| {
                        load::linear(&(vs.root() / i), HIDDEN, HIDDEN, Default::default(), fill)
                    })
                    .collect::<Vec<_>>()
            });
            let grown = resident() - before;
            println!("GROWN {grown}");
            return drop(skeleton);
        } else {
            (0..LAYERS)
                .map(|i| nn::linear(vs.root() / i, HIDDEN, HIDDEN, Default::default()))
                .collect()
        };
        println!("GROWN {}", resident() - before);
        drop(layers);
        return;
    }
    let grown = |which: &str| -> u64 {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_skeleton_touches_no_page_until_it_is_loaded",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, which)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .split("GROWN ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{text}"));
        line.trim().parse().unwrap()
    };
    let (skeleton, initialized) = (grown("skeleton"), grown("tch"));
    println!(
        "skeleton: {skeleton} bytes, tch's layers: {initialized} bytes, model: {model_bytes} bytes"
    );
    assert!(
        initialized >= model_bytes * 9 / 10,
        "tch's layers are resident: {initialized}"
    );
    assert!(
        skeleton < model_bytes / 20,
        "the skeleton touched {skeleton} bytes of {model_bytes}"
    );
}
