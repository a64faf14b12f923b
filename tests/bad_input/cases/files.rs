//! Loading checkpoints: damaged files, files that do not fit the model, hooks.
use crate::case;
use crate::fingerprint::Fingerprint;
use crate::fixture::{floats, set_entry, Fixture};
use crate::{only_problem, Case};
use std::path::Path;
use tch::{Device, Kind, Tensor};
use tch_patch::{
    load::load_safetensors, load::load_safetensors_with, load::LoadError, load::LoadOptions,
    params::TensorProblem, PatchError,
};

fn load(fx: &mut Fixture, path: &Path) -> Result<(), PatchError> {
    load_safetensors(fx.net(), path, &LoadOptions::new())
        .map(drop)
        .map_err(PatchError::from)
}

fn load_finite(fx: &mut Fixture, path: &Path) -> Result<(), PatchError> {
    let options = LoadOptions::new().reject_non_finite(true);
    load_safetensors(fx.net(), path, &options)
        .map(drop)
        .map_err(PatchError::from)
}

/// The bytes of a safetensors file with this JSON header and data.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// A named pipe at `name` in the fixture's folder.
fn fifo(fx: &Fixture, name: &str) -> std::path::PathBuf {
    let path = fx.file(name);
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
    path
}

/// Whether an error's text is short: one line, no C++ stack trace.
fn short(error: &impl std::fmt::Display) -> bool {
    let text = error.to_string();
    text.len() < 300 && !text.contains('\n')
}

/// The fixture's valid checkpoint, changed by `damage`, written to `damaged.safetensors`.
fn damaged(fx: &mut Fixture, damage: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = std::fs::read(&fx.checkpoint).unwrap();
    damage(&mut bytes);
    fx.write_bytes("damaged.safetensors", &bytes)
}

/// Deterministic noise (a linear congruential generator), so failures reproduce.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect()
}

/// A linear layer and a buffer that is an expanded view (stride 0): libtorch refuses to
/// `copy_` into the buffer, so a load must refuse before writing the layer.
#[derive(tch_patch::Parameters)]
struct WithExpandedBuffer {
    fc: tch::nn::Linear,
    #[buffer]
    scale: Tensor,
}

fn load_into_expanded(fx: &mut Fixture) -> Result<(), PatchError> {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let mut module = WithExpandedBuffer {
        fc: tch::nn::linear(vs.root() / "fc", 2, 3, Default::default()),
        scale: Tensor::ones([1], (Kind::Float, Device::Cpu)).expand([3], false),
    };
    let entries = [
        ("fc.weight", floats(&[3, 2])),
        ("fc.bias", floats(&[3])),
        ("scale", floats(&[3])),
    ];
    let path = fx.file("expanded.safetensors");
    Tensor::write_safetensors(&entries, &path).unwrap();
    let before = Fingerprint::take(&vs, Some(&module));
    let result = load_safetensors(&mut module, &path, &LoadOptions::new()).map(drop);
    let changes = before.differences(&vs, Some(&module));
    assert!(changes.is_empty(), "half loaded: {changes:?}");
    result.map_err(PatchError::from)
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "load: a tensor of the module is an expanded view (all or none)",
            |fx| load_into_expanded(fx),
            e if matches!(only_problem(e), Some(TensorProblem::NotWritable { name }) if name == "scale")
        ),
        case!(
            "load: missing file",
            |fx| load(fx, &fx.file("absent.safetensors")),
            PatchError::Load(LoadError::Read { path, .. }) if path.ends_with("absent.safetensors")
        ),
        case!(
            "load: a folder instead of a file",
            |fx| load(fx, &fx.dir.0.clone()),
            PatchError::Load(LoadError::Read { path, .. }) if path.is_dir()
        ),
        case!(
            "load: empty file",
            |fx| load(fx, &fx.write_bytes("empty.safetensors", &[])),
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: truncated file (half of a valid one)",
            |fx| {
                let path = damaged(fx, |bytes| bytes.truncate(bytes.len() / 2));
                load(fx, &path)
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: last byte missing",
            |fx| {
                let path = damaged(fx, |bytes| {
                    bytes.pop();
                });
                load(fx, &path)
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: random bytes",
            |fx| load(fx, &fx.write_bytes("noise.safetensors", &noise(4096))),
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: header length past the end of the file",
            |fx| {
                let path = damaged(fx, |bytes| {
                    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
                    bytes[..8].copy_from_slice(&(n + 1_000_000).to_le_bytes());
                });
                load(fx, &path)
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: header length one byte short",
            |fx| {
                let path = damaged(fx, |bytes| {
                    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
                    bytes[..8].copy_from_slice(&(n - 1).to_le_bytes());
                });
                load(fx, &path)
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: header length u64::MAX",
            |fx| {
                let path = damaged(fx, |bytes| {
                    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes())
                });
                load(fx, &path)
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: header that is not JSON",
            |fx| load(
                fx,
                &fx.write_bytes("text.safetensors", &raw("{not json", &[]))
            ),
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: data offsets that do not match the shape",
            |fx| {
                let header = r#"{"fc1.bias":{"dtype":"F32","shape":[8],"data_offsets":[0,16]}}"#;
                load(
                    fx,
                    &fx.write_bytes("offsets.safetensors", &raw(header, &[0; 16])),
                )
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: overlapping data offsets",
            |fx| {
                let header = r#"{"fc1.bias":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"fc2.bias":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}"#;
                load(
                    fx,
                    &fx.write_bytes("overlap.safetensors", &raw(header, &[0; 32])),
                )
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: a dtype tch has no kind for (U16)",
            |fx| {
                let header = r#"{"fc2.bias":{"dtype":"U16","shape":[4],"data_offsets":[0,8]}}"#;
                load(
                    fx,
                    &fx.write_bytes("u16.safetensors", &raw(header, &[0; 8])),
                )
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: a dimension past i64::MAX next to a zero one",
            |fx| {
                let header = r#"{"fc2.bias":{"dtype":"F32","shape":[0,9223372036854775809],"data_offsets":[0,0]}}"#;
                load(
                    fx,
                    &fx.write_bytes("huge-dim.safetensors", &raw(header, &[])),
                )
            },
            PatchError::Load(LoadError::Read { .. })
        ),
        case!(
            "load: one tensor name twice in the header, with two dtypes",
            |fx| {
                let header = r#"{"fc2.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"fc2.bias":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}}"#;
                load(fx, &fx.write_bytes("twice.safetensors", &raw(header, &[0; 16])))
            },
            PatchError::Load(LoadError::Read { source, .. }) if source.to_string() == "its header names tensor \"fc2.bias\" twice"
        ),
        case!(
            "load: a zero-sized shape whose other dimensions overflow libtorch's count",
            |fx| {
                let header = r#"{"fc2.bias":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}}"#;
                load(fx, &fx.write_bytes("uncountable.safetensors", &raw(header, &[])))
            },
            PatchError::Load(LoadError::Read { source, .. }) if short(source) && source.to_string().contains("more elements than libtorch can count")
        ),
        case!(
            "load: a header claiming 200 MB, refused before it is read",
            |fx| {
                let mut bytes = 200_000_000u64.to_le_bytes().to_vec();
                bytes.extend_from_slice(b"{}");
                load(fx, &fx.write_bytes("big-header.safetensors", &bytes))
            },
            PatchError::Load(LoadError::Read { source, .. }) if source.to_string().contains("past the 100000000-byte limit")
        ),
        case!(
            "load: a symbolic link to /dev/zero",
            |fx| {
                let link = fx.file("zero.safetensors");
                std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
                load(fx, &link)
            },
            PatchError::Load(LoadError::Read { source, .. }) if source.to_string().contains("it is a device")
        ),
        case!(
            "load: a named pipe (refused at once, not waited on)",
            |fx| load(fx, &fifo(fx, "pipe.safetensors")),
            PatchError::Load(LoadError::Read { source, .. }) if source.to_string().contains("it is a named pipe")
        ),
        case!(
            "load: NaN where finite values are required",
            |fx| {
                let bias = floats(&[8]);
                let _ = bias.get(3).fill_(f64::NAN);
                let path = fx.write_checkpoint("nan.safetensors", |e| set_entry(e, "fc1.bias", bias));
                load_finite(fx, &path)
            },
            e if matches!(only_problem(e), Some(TensorProblem::NonFinite { name, count: 1 }) if name == "fc1.bias")
        ),
        case!(
            "load: infinities where finite values are required",
            |fx| {
                let weight = Tensor::full([4, 8], f64::NEG_INFINITY, (Kind::Float, Device::Cpu));
                let path = fx.write_checkpoint("inf.safetensors", |e| set_entry(e, "fc2.weight", weight));
                load_finite(fx, &path)
            },
            e if matches!(only_problem(e), Some(TensorProblem::NonFinite { name, count: 32 }) if name == "fc2.weight")
        ),
        case!(
            "load: wrong shape",
            |fx| {
                let path = fx.write_checkpoint("shape.safetensors", |e| set_entry(e, "fc1.weight", floats(&[4, 8])));
                load(fx, &path)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Shape { name, .. }) if name == "fc1.weight")
        ),
        case!(
            "load: wrong dtype",
            |fx| {
                let bias = Tensor::zeros([4], (Kind::BFloat16, Device::Cpu));
                let path = fx.write_checkpoint("dtype.safetensors", |e| set_entry(e, "fc2.bias", bias));
                load(fx, &path)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Kind { actual: Kind::BFloat16, .. }))
        ),
        case!(
            "load: a key the model does not have",
            |fx| {
                let path = fx.write_checkpoint("extra.safetensors", |e| e.push(("fc3.weight".into(), floats(&[2]))));
                load(fx, &path)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Unexpected { name }) if name == "fc3.weight")
        ),
        case!(
            "load: a tensor of the model missing from the file",
            |fx| {
                let path = fx.write_checkpoint("missing.safetensors", |e| e.retain(|(n, _)| n != "fc2.bias"));
                load(fx, &path)
            },
            e if matches!(only_problem(e), Some(TensorProblem::Missing { name }) if name == "fc2.bias")
        ),
        case!(
            "load: an empty checkpoint (no tensors)",
            |fx| {
                let path = fx.write_checkpoint("none.safetensors", |e| e.clear());
                load(fx, &path)
            },
            PatchError::Load(LoadError::InvalidTensors { problems, .. }) if problems.len() == 6
        ),
        case!(
            "load: two different values for one tied tensor",
            |fx| {
                let path = fx.write_checkpoint("tied.safetensors", |e| set_entry(e, "head.weight", floats(&[16, 4])));
                load(fx, &path)
            },
            e if matches!(only_problem(e), Some(TensorProblem::TiedConflict { name, .. }) if name == "head.weight")
        ),
        case!(
            "load: the hook fails on one tensor",
            |fx| {
                let path = fx.checkpoint.clone();
                load_safetensors_with(fx.net(), &path, &LoadOptions::new(), |name, t| {
                    if name == "fc2.weight" {
                        Err(PatchError::Empty { what: "the test's patience" })
                    } else {
                        Ok(t)
                    }
                })
            },
            e if matches!(only_problem(e), Some(TensorProblem::Hook { name, error }) if name == "fc2.weight" && matches!(**error, PatchError::Empty { .. }))
        ),
        case!(
            "load: the hook returns an undefined tensor",
            |fx| {
                let path = fx.checkpoint.clone();
                load_safetensors_with(fx.net(), &path, &LoadOptions::new(), |name, t| {
                    Ok(if name == "fc1.bias" { Tensor::new() } else { t })
                })
            },
            e if matches!(only_problem(e), Some(TensorProblem::Undefined { name }) if name == "fc1.bias")
        ),
    ]
}
