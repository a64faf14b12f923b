//! `Int8Linear`: int8 storage that really is int8, its error bound, gradients through it,
//! undo, patch strings, and quantize-on-load into a skeleton that never holds the float
//! model (resident memory measured in a child process).
mod common;

use common::slot_model::{self, Model};
use common::TempFile;
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_patch::load::{self, load_safetensors, LoadMode, LoadOptions, Skeleton};
use tch_patch::patches::{Int8Config, Int8Linear};
use tch_patch::{apply_patch_string, named_tensors, unpatch, Parameters};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn config(activations: &str) -> Int8Config {
    Int8Config {
        activations: activations.into(),
    }
}

/// `(name, data_ptr)` of every tensor.
fn pointers<M: Parameters>(module: &M) -> Vec<(String, usize)> {
    named_tensors(module)
        .into_iter()
        .map(|t| (t.name, t.tensor.data_ptr() as usize))
        .collect()
}

fn max(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// The error bound of the type's docs, per output entry, for `xs @ wᵀ` (no bias).
fn bound(xs: &Tensor, w: &Tensor, dynamic: bool) -> Tensor {
    let w_scale = w.abs().amax([1], false) / 127.0; // [out]
    let x_abs_sum = xs
        .abs()
        .sum_dim_intlist([1i64].as_slice(), true, Kind::Float); // [m, 1]
    let weight_term = x_abs_sum * &w_scale / 2.0;
    // float32 rounding of the sums, on both sides
    let rounding = xs.abs().matmul(&w.abs().tr()) * 1e-5;
    if !dynamic {
        return weight_term + rounding;
    }
    let x_scale = xs.abs().amax([1], true) / 127.0; // [m, 1]
    let w_abs_sum = w
        .abs()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float); // [out]
    let k = xs.size()[1] as f64;
    weight_term + &x_scale * w_abs_sum / 2.0 + &x_scale * &w_scale * (k / 4.0) + rounding
}

#[test]
fn every_output_is_within_the_documented_bound_of_the_float_layer() {
    tch::manual_seed(11);
    let shapes = [(16, 1024, 4096), (3, 1000, 24), (2, 9, 5)];
    for ((batch, inputs, outputs), activations) in shapes
        .into_iter()
        .flat_map(|shape| [(shape, "dynamic"), (shape, "weight_only")])
    {
        let vs = nn::VarStore::new(Device::Cpu);
        let fc = nn::linear(vs.root() / "fc", inputs, outputs, no_bias());
        let w = fc.ws.detach().copy();
        let xs = Tensor::randn([batch, inputs], CPU);
        let reference = xs.matmul(&w.tr());
        let int8 = Int8Linear::new(fc, &(vs.root() / "fc"), &config(activations)).unwrap();
        let out = int8.forward(&xs);
        let error = (&out - &reference).abs();
        let limit = bound(&xs, &w, activations == "dynamic");
        let over = (&error - &limit).max().double_value(&[]);
        println!(
            "{activations} {inputs} -> {outputs}: max error {:.4} = {:.2}% of max |y| {:.2}",
            max(&error),
            100.0 * max(&error) / max(&reference),
            max(&reference)
        );
        assert!(
            over <= 0.0,
            "{activations}: the bound is exceeded by {over}"
        );
        assert!(max(&error) < 0.02 * max(&reference), "{activations}");
    }
}

/// libtorch's bfloat16 `_weight_int8pack_mm` breaks for rows whose length is not a
/// multiple of 16; such inputs go through the float32 kernel and stay right.
#[test]
fn bfloat16_inputs_are_right_whatever_the_row_length() {
    tch::manual_seed(13);
    for inputs in [8, 24, 40, 1000, 1024] {
        let vs = nn::VarStore::new(Device::Cpu);
        let fc = nn::linear(vs.root() / "fc", inputs, 24, no_bias());
        let int8 = Int8Linear::new(fc, &(vs.root() / "fc"), &config("weight_only")).unwrap();
        let xs = Tensor::randn([3, inputs], (Kind::BFloat16, Device::Cpu));
        let out = int8.forward(&xs);
        assert_eq!(out.kind(), Kind::BFloat16);
        let reference = xs
            .to_kind(Kind::Float)
            .matmul(&int8.dequantized_weight().tr());
        let scale = xs
            .to_kind(Kind::Float)
            .abs()
            .matmul(&int8.dequantized_weight().abs().tr());
        let relative = ((out.to_kind(Kind::Float) - reference).abs() / scale).max();
        assert!(relative.double_value(&[]) < 1e-2, "{inputs}: {relative}");
    }
}

#[test]
fn the_weight_becomes_int8_in_the_same_tensor_object_and_undo_gives_a_float_layer_back() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let fc = nn::linear(vs.root() / "fc", 8, 4, Default::default());
    let held = vs.variables()["fc.weight"].shallow_clone(); // e.g. an optimizer's handle
    let bias_ptr = fc.bs.as_ref().unwrap().data_ptr();
    let int8 = Int8Linear::new(fc, &(vs.root() / "fc"), &Int8Config::default()).unwrap();

    assert_eq!(
        held.kind(),
        Kind::Int8,
        "every holder of the weight sees int8"
    );
    assert_eq!(held.size(), [4, 8]);
    assert_eq!(held.data_ptr(), int8.ws.data_ptr());
    assert!(!held.requires_grad());
    assert_eq!(int8.bs.as_ref().unwrap().data_ptr(), bias_ptr);
    let names: Vec<String> = pointers(&int8).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias", "weight_scale"]);
    let scale = int8.weight_scale().shallow_clone();
    assert_eq!((scale.kind(), scale.size()), (Kind::Float, vec![4]));
    assert!(vs.variables().contains_key("fc.weight_scale"));
    assert!(
        !vs.trainable_variables()
            .iter()
            .any(|t| t.data_ptr() == scale.data_ptr()),
        "the scales are a buffer"
    );
    let dequantized = int8.dequantized_weight();

    let linear = unpatch(int8, &vs);
    assert_eq!(held.kind(), Kind::Float, "the same object, float again");
    assert_eq!(held.data_ptr(), linear.ws.data_ptr());
    assert!(
        linear.ws.equal(&dequantized),
        "the rounded weight comes back"
    );
    assert!(linear.ws.requires_grad(), "requires_grad as before");
    assert_eq!(linear.bs.as_ref().unwrap().data_ptr(), bias_ptr);
    assert!(!vs.variables().contains_key("fc.weight_scale"));
    let xs = Tensor::randn([2, 8], CPU);
    let expected = xs.matmul(&dequantized.tr()) + linear.bs.as_ref().unwrap();
    assert!(linear.forward(&xs).allclose(&expected, 1e-6, 1e-6, false));
}

#[test]
fn gradients_reach_the_input_and_the_bias_never_the_int8_weight() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let fc = nn::linear(vs.root() / "fc", 6, 3, Default::default());
    let int8 = Int8Linear::new(fc, &(vs.root() / "fc"), &Int8Config::default()).unwrap();
    let dequantized = int8.dequantized_weight();

    let xs = Tensor::randn([4, 6], CPU).set_requires_grad(true);
    int8.forward(&xs).sum(Kind::Float).backward();
    let expected = Tensor::ones([4, 3], CPU).matmul(&dequantized);
    assert!(xs.grad().allclose(&expected, 1e-6, 1e-6, false));

    let bias = int8.bs.as_ref().unwrap();
    let mut bias_grad = bias.grad();
    assert!(bias_grad.equal(&Tensor::full([3], 4.0, CPU)));
    let _ = bias_grad.zero_();
    // An input without grad: the int8 kernel; the bias still trains.
    int8.forward(&Tensor::randn([2, 6], CPU))
        .sum(Kind::Float)
        .backward();
    assert!(bias.grad().equal(&Tensor::full([3], 2.0, CPU)));
    assert!(!int8.ws.grad().defined());
}

#[test]
fn inputs_of_any_rank_and_float_dtype_keep_their_shape_and_dtype() {
    let vs = nn::VarStore::new(Device::Cpu);
    let fc = nn::linear(vs.root() / "fc", 8, 5, Default::default());
    for activations in ["dynamic", "weight_only"] {
        let path = vs.root() / activations;
        let fc = nn::linear(&path, 8, 5, Default::default());
        let int8 = Int8Linear::new(fc, &path, &config(activations)).unwrap();
        for kind in [Kind::Float, Kind::BFloat16, Kind::Double] {
            let xs = Tensor::randn([2, 3, 8], (kind, Device::Cpu));
            let out = int8.forward(&xs);
            assert_eq!((out.size(), out.kind()), (vec![2, 3, 5], kind));
        }
        let empty = int8.forward(&Tensor::zeros([0, 8], CPU));
        assert_eq!(empty.size(), [0, 5]);
        let zeros = int8.forward(&Tensor::zeros([1, 8], CPU));
        assert!(zeros.equal(&int8.bs.as_ref().unwrap().unsqueeze(0)));
    }
    drop(fc);
}

/// The slot model with a forward through every linear slot.
fn run(model: &Model, xs: &Tensor) -> Tensor {
    model.blocks.iter().fold(xs.shallow_clone(), |h, block| {
        let h = block.attn.q.forward_eval(&h) + block.attn.v.forward_eval(&h);
        block.mlp.forward_eval(&h.tanh())
    })
}

#[test]
fn a_patch_string_quantizes_the_linear_slots_it_names_and_undo_restores_floats() {
    tch::manual_seed(9);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = slot_model::model(&vs, 16, 32);
    let xs = Tensor::randn([3, 32], CPU);
    let float_out = run(&model, &xs);
    let reports = apply_patch_string(
        &mut model,
        &vs,
        r#"int8(activations="weight_only", targets="blocks.*.attn.q"); int8(targets="blocks.*.mlp")"#,
    )
    .unwrap();
    assert_eq!(reports.len(), 2);
    let q = &model.blocks[0].attn.q;
    assert_eq!(q.patch_name(), Some("int8"));
    assert_eq!(q.root().ws.kind(), Kind::Int8);
    assert_eq!(model.blocks[0].attn.v.root().ws.kind(), Kind::Float);
    let int8_q = q.downcast_ref::<Int8Linear>().unwrap();
    assert_eq!(int8_q.config(), config("weight_only"));
    let out = run(&model, &xs);
    assert!(max(&(&out - &float_out)) < 0.05 * max(&float_out));

    // int8 over an int8 slot: the slot is patched already.
    let again = apply_patch_string(&mut model, &vs, r#"int8(targets="blocks.0.mlp")"#);
    assert!(again.is_err());
    for block in &mut model.blocks {
        for slot in [&mut block.attn.q, &mut block.mlp] {
            slot.unpatch_from(&vs).unwrap();
            assert_eq!(slot.root().ws.kind(), Kind::Float);
        }
    }
    assert!(!vs.variables().keys().any(|k| k.ends_with("weight_scale")));
}

/// Sixteen 2048 x 2048 layers without bias: 256 MiB of float32.
const LAYERS: i64 = 16;
const HIDDEN: i64 = 2048;

fn no_bias() -> nn::LinearConfig {
    nn::LinearConfig {
        bias: false,
        ..Default::default()
    }
}

/// A skeleton of int8 layers: the float weights are never touched, the int8 ones and
/// their scales are left for the load.
fn int8_skeleton(vs: &nn::VarStore, layers: i64, hidden: i64) -> Skeleton<Vec<Int8Linear>> {
    Skeleton::build(vs, |fill| {
        (0..layers)
            .map(|i| {
                let path = vs.root() / i;
                let float = load::linear(&path, hidden, hidden, no_bias(), fill);
                Int8Linear::new_uninit(float, &path, &Int8Config::default()).unwrap()
            })
            .collect()
    })
}

#[test]
fn a_float_checkpoint_quantizes_on_load_into_int8_layers_exactly_as_new_does() {
    tch::manual_seed(21);
    let file = TempFile::new("int8-load");
    let source = nn::VarStore::new(Device::Cpu);
    let floats: Vec<nn::Linear> = (0..3)
        .map(|i| nn::linear(source.root() / i, 16, 16, no_bias()))
        .collect();
    source.save(file.path()).unwrap();
    let expected: Vec<Int8Linear> = floats
        .into_iter()
        .enumerate()
        .map(|(i, fc)| Int8Linear::new(fc, &(source.root() / i), &Int8Config::default()).unwrap())
        .collect();

    for mode in [LoadMode::Copy, LoadMode::Assign] {
        let vs = nn::VarStore::new(Device::Cpu);
        let skeleton = int8_skeleton(&vs, 3, 16);
        let hook = Int8Linear::load_hook(skeleton.module());
        let options = LoadOptions::new().mode(mode);
        let loaded = skeleton.load_with(file.path(), &options, hook).unwrap();
        for (got, want) in loaded.iter().zip(&expected) {
            assert_eq!(got.ws.kind(), Kind::Int8);
            assert!(got.ws.equal(&want.ws), "{mode:?}");
            assert!(got.weight_scale().equal(want.weight_scale()), "{mode:?}");
        }
    }

    // An int8 checkpoint (what saving int8 layers writes) loads as it is, hook or not.
    let int8_file = TempFile::new("int8-saved");
    source.save(int8_file.path()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut fresh = int8_skeleton(&vs, 3, 16).load(int8_file.path(), &LoadOptions::new());
    let fresh = fresh.as_mut().unwrap();
    for (got, want) in fresh.iter().zip(&expected) {
        assert!(got.ws.equal(&want.ws) && got.weight_scale().equal(want.weight_scale()));
    }
    let before = pointers(fresh);
    load_safetensors(fresh, int8_file.path(), &LoadOptions::new()).unwrap();
    assert_eq!(pointers(fresh), before, "copied into the same int8 tensors");
}

/// This process's peak and current resident memory, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmHWM:") * 1024, field("VmRSS:") * 1024)
}

/// In a child process of its own: 256 MiB of float32 weights loaded into int8 layers
/// (quantized on load, into a skeleton, assigned) against the same file loaded as float.
#[test]
fn int8_layers_loaded_from_a_float_checkpoint_hold_a_quarter_of_the_memory() {
    const CHILD: &str = "TCH_PATCH_INT8_CHILD";
    let model_bytes = (LAYERS * HIDDEN * HIDDEN * 4) as u64;
    if let (Ok(which), Ok(file)) = (std::env::var(CHILD), std::env::var("TCH_PATCH_INT8_FILE")) {
        let vs = nn::VarStore::new(Device::Cpu);
        let (_, before) = memory();
        let options = LoadOptions::new().mode(LoadMode::Assign);
        let keep: Box<dyn std::any::Any> = if which == "int8" {
            let skeleton = int8_skeleton(&vs, LAYERS, HIDDEN);
            let hook = Int8Linear::load_hook(skeleton.module());
            Box::new(skeleton.load_with(&file, &options, hook).unwrap())
        } else {
            let skeleton = Skeleton::build(&vs, |fill| {
                (0..LAYERS)
                    .map(|i| load::linear(&(vs.root() / i), HIDDEN, HIDDEN, no_bias(), fill))
                    .collect::<Vec<_>>()
            });
            Box::new(skeleton.load(&file, &options).unwrap())
        };
        let (peak, now) = memory();
        println!("MEMORY {} {}", now - before, peak - before);
        drop(keep);
        return;
    }
    let file = TempFile::new("int8-memory");
    {
        let vs = nn::VarStore::new(Device::Cpu);
        let _layers: Vec<nn::Linear> = (0..LAYERS)
            .map(|i| nn::linear(vs.root() / i, HIDDEN, HIDDEN, no_bias()))
            .collect();
        vs.save(file.path()).unwrap();
    }
    let measure = |which: &str| -> (u64, u64) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "int8_layers_loaded_from_a_float_checkpoint_hold_a_quarter_of_the_memory",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, which)
            .env("TCH_PATCH_INT8_FILE", file.path())
            // A fixed threshold (no glibc heuristics) for both: each tensor of 1 MiB or more
            // has its own mapping, returned when freed, so the numbers are what is held.
            .env("MALLOC_MMAP_THRESHOLD_", "1048576")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let numbers: Vec<u64> = text
            .split("MEMORY ")
            .nth(1)
            .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            .split_whitespace()
            .take(2)
            .map(|n| n.parse().unwrap())
            .collect();
        (numbers[0], numbers[1])
    };
    let (int8, int8_peak) = measure("int8");
    let (float, float_peak) = measure("float");
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "resident after the load: int8 {:.1} MiB, float {:.1} MiB ({:.2}x smaller); peak: \
         int8 {:.1} MiB, float {:.1} MiB; float weights {:.0} MiB",
        mib(int8),
        mib(float),
        float as f64 / int8 as f64,
        mib(int8_peak),
        mib(float_peak),
        mib(model_bytes)
    );
    assert!(float >= model_bytes * 9 / 10, "float resident: {float}");
    assert!(
        int8 < model_bytes / 3,
        "int8 layers hold {int8} bytes of {model_bytes}"
    );
    assert!(
        int8_peak < model_bytes * 4 / 10,
        "the float model was never whole: {int8_peak}"
    );
}

#[test]
fn a_quantizing_load_that_fails_changes_nothing() {
    let file = TempFile::new("int8-bad");
    let weight = Tensor::randn([4, 8], CPU);
    let bias = Tensor::from_slice(&[f32::NAN, 0.0, 0.0, 0.0]);
    Tensor::write_safetensors(&[("weight", &weight), ("bias", &bias)], file.path()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = nn::linear(vs.root(), 8, 4, Default::default());
    let mut int8 = Int8Linear::new(layer, &vs.root(), &Int8Config::default()).unwrap();
    let before: Vec<(String, usize, Tensor)> = named_tensors(&int8)
        .into_iter()
        .map(|t| (t.name, t.tensor.data_ptr() as usize, t.tensor.copy()))
        .collect();
    for mode in [LoadMode::Copy, LoadMode::Assign] {
        let options = LoadOptions::new().mode(mode).reject_non_finite(true);
        let hook = Int8Linear::load_hook(&int8);
        let error = tch_patch::load::load_safetensors_with(&mut int8, file.path(), &options, hook)
            .unwrap_err();
        assert!(error.to_string().contains("bias"), "{error}");
        for ((name, ptr, value), now) in before.iter().zip(named_tensors(&int8)) {
            assert_eq!((name, *ptr), (&now.name, now.tensor.data_ptr() as usize));
            assert!(value.equal(&now.tensor), "{name} changed");
        }
    }
}
