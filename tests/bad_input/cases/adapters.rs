//! Adapter folders: a good one written by the library (`save_model_adapter` from a
//! patched tree of its own), then damaged on disk (the manifest's JSON edited, a tensor
//! of `adapter.safetensors` dropped, added or changed) and loaded onto the fixture's fresh
//! tree with `load_model_adapter`. A folder that does not read is refused before anything
//! is patched; one that reads but does not fit the tree is undone.
use crate::case;
use crate::fixture::{floats, set_entry, Fixture, TreeNet};
use crate::Case;
use serde_json::{json, Value};
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};
use tch_patch::adapter::AdapterError;
use tch_patch::adapter::{
    load_model_adapter_with, AdapterDtype, AdapterProblem, MANIFEST_FILE, TENSORS_FILE,
};
use tch_patch::registry::PatchStringError;
use tch_patch::registry::{apply_specs, Registry};
use tch_patch::tree::TreeError;
use tch_patch::{
    adapter::load_model_adapter, adapter::save_model_adapter, params::TensorProblem, PatchError,
};

/// The saved patches: a LoRA of rank 2 on `blocks.{0,1,2}.q` (`lora_a [2, 4]`, `lora_b
/// [4, 2]`) and `bias_only` on `blocks.1.v` (`bias_delta [4]`). The manifest lists them
/// in slot order: `blocks.0.q`, `blocks.1.q`, `blocks.1.v`, `blocks.2.q`.
const PATCHES: &str = r#"lora(rank=2, targets="blocks.*.q"); bias_only(targets="blocks.1.v")"#;

/// Writes the good adapter to `adapter/` (from a patched tree in a VarStore of its own)
/// and makes the fixture's tree, fresh and unpatched.
fn saved(fx: &mut Fixture) -> PathBuf {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut tree = TreeNet::new(&vs);
    let specs = Registry::global().unwrap().parse(PATCHES).unwrap();
    apply_specs(&mut tree, &vs, &specs).unwrap();
    let dir = fx.file("adapter");
    save_model_adapter(&dir, &tree, &specs).unwrap();
    fx.with_tree();
    dir
}

/// The good adapter with its manifest's text changed by `edit`.
fn edited_text(fx: &mut Fixture, edit: impl FnOnce(String) -> String) {
    let path = saved(fx).join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

/// The good adapter with its manifest changed by `edit`.
fn edited(fx: &mut Fixture, edit: impl FnOnce(&mut Value)) {
    edited_text(fx, |text| {
        let mut manifest: Value = serde_json::from_str(&text).unwrap();
        edit(&mut manifest);
        serde_json::to_string_pretty(&manifest).unwrap()
    });
}

/// Writes `adapter.safetensors` again, its tensors changed by `change`.
fn retensor(dir: &std::path::Path, change: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path = dir.join(TENSORS_FILE);
    let mut entries = Tensor::read_safetensors(&path).unwrap();
    change(&mut entries);
    Tensor::write_safetensors(&entries, &path).unwrap();
}

/// The good adapter with the tensors of `adapter.safetensors` changed by `change`.
fn retensored(fx: &mut Fixture, change: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let dir = saved(fx);
    retensor(&dir, change);
}

/// The good adapter with the patched path `from` renamed `to` in both files (path,
/// targets and tensor names), so it still reads.
fn moved(fx: &mut Fixture, from: &str, to: &str) {
    edited_text(fx, |text| {
        text.replace(&format!("\"{from}"), &format!("\"{to}"))
    });
    retensor(&fx.file("adapter"), |entries| {
        for (name, _) in entries.iter_mut() {
            if let Some(local) = name.strip_prefix(&format!("{from}.")) {
                *name = format!("{to}.{local}");
            }
        }
    });
}

/// The first patch of the manifest (`blocks.0.q`, a LoRA).
fn first(manifest: &mut Value) -> &mut Value {
    &mut manifest["patches"][0]
}

/// Loads the fixture's adapter folder onto its tree.
fn load(fx: &mut Fixture) -> Result<(), PatchError> {
    let dir = fx.file("adapter");
    let Fixture { vs, tree, .. } = fx;
    load_model_adapter(tree.as_mut().expect("made in setup"), vs, dir).map(drop)
}

/// [`load`] refusing any dtype difference instead of converting floats.
fn load_exact(fx: &mut Fixture) -> Result<(), PatchError> {
    let dir = fx.file("adapter");
    let Fixture { vs, tree, .. } = fx;
    load_model_adapter_with(
        tree.as_mut().expect("made in setup"),
        vs,
        dir,
        AdapterDtype::Exact,
    )
    .map(drop)
}

/// The problems of an `InvalidAdapter` error (none for another error).
pub(super) fn problems(error: &PatchError) -> &[AdapterProblem] {
    match error {
        PatchError::Adapter(AdapterError { problems, .. }) => problems,
        _ => &[],
    }
}

/// The one problem of an `InvalidAdapter` error, if there is exactly one.
pub(super) fn only(error: &PatchError) -> Option<&AdapterProblem> {
    match problems(error) {
        [problem] => Some(problem),
        _ => None,
    }
}

/// Whether the error's only problem is with manifest field `at`, its message starting
/// with `message`.
fn field(error: &PatchError, at: &str, message: &str) -> bool {
    matches!(only(error), Some(AdapterProblem::Field { file, field, message: m })
        if file == MANIFEST_FILE && field == at && m.starts_with(message))
}

/// Whether the error's only problem is the registry's `error` for the patch at `at`.
fn invalid_patch(error: &PatchError, at: &str, expect: fn(&PatchError) -> bool) -> bool {
    matches!(only(error), Some(AdapterProblem::InvalidPatch { path, error }) if path == at && expect(error))
}

/// The problems of an `InvalidTensors` error (none for another error).
fn tensor_problems(error: &PatchError) -> &[TensorProblem] {
    match error {
        PatchError::InvalidTensors { problems, .. } => problems,
        _ => &[],
    }
}

pub(super) fn cases() -> Vec<Case> {
    let mut cases = manifest_cases();
    cases.extend(tensor_cases());
    cases.extend(fit_cases());
    cases
}

/// The manifest: syntax, fields, format, patches and their arguments.
fn manifest_cases() -> Vec<Case> {
    vec![
        case!(
            "adapter: adapter.safetensors left from an earlier save (a save interrupted between its two files)",
            setup: |fx| {
                let dir = saved(fx);
                let earlier = std::fs::read(dir.join(TENSORS_FILE)).unwrap();
                saved(fx);
                std::fs::write(dir.join(TENSORS_FILE), earlier).unwrap();
            },
            |fx| load(fx),
            e if matches!(problems(e), [AdapterProblem::MixedSaves { manifest_id, tensors_id, .. }]
                if manifest_id != tensors_id)
        ),
        case!(
            "adapter: adapter.safetensors names one tensor twice",
            setup: |fx| {
                let dir = saved(fx);
                let header = r#"{"blocks.0.q.lora_a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"blocks.0.q.lora_a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
                let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
                bytes.extend_from_slice(header.as_bytes());
                bytes.extend_from_slice(&[0; 8]);
                std::fs::write(dir.join(TENSORS_FILE), bytes).unwrap();
            },
            |fx| load(fx),
            e if problems(e).iter().any(|p| matches!(p, AdapterProblem::Read { message, .. }
                if message == "its header names tensor \"blocks.0.q.lora_a\" twice"))
        ),
        case!(
            "adapter: adapter.json is a symbolic link to /dev/zero",
            setup: |fx| {
                let dir = saved(fx);
                std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
                std::os::unix::fs::symlink("/dev/zero", dir.join(MANIFEST_FILE)).unwrap();
            },
            |fx| load(fx),
            e if problems(e).iter().any(|p| matches!(p, AdapterProblem::Read { file, message }
                if file == MANIFEST_FILE && message.contains("it is a device")))
        ),
        case!(
            "adapter: adapter.json is a named pipe",
            setup: |fx| {
                let dir = saved(fx);
                std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
                let made = std::process::Command::new("mkfifo").arg(dir.join(MANIFEST_FILE)).status();
                assert!(made.is_ok_and(|s| s.success()));
            },
            |fx| load(fx),
            e if problems(e).iter().any(|p| matches!(p, AdapterProblem::Read { file, message }
                if file == MANIFEST_FILE && message.contains("it is a named pipe")))
        ),
        case!(
            "adapter: adapter.json larger than the 16 MiB a JSON side file may be",
            setup: |fx| {
                let dir = saved(fx);
                std::fs::write(dir.join(MANIFEST_FILE), vec![b' '; (16 << 20) + 1]).unwrap();
            },
            |fx| load(fx),
            e if problems(e).iter().any(|p| matches!(p, AdapterProblem::Read { file, message }
                if file == MANIFEST_FILE && message.contains("more than the 16777216 read")))
        ),
        case!(
            "adapter: a manifest naming an unknown patch",
            setup: |fx| edited(fx, |m| first(m)["patch"] = json!("lorra")),
            |fx| load(fx),
            e if invalid_patch(e, "blocks.0.q", |e| matches!(e,
                PatchError::PatchString(PatchStringError::UnknownPatch { name, nearest: Some(nearest), .. }) if name == "lorra" && nearest == "lora"))
        ),
        case!(
            "adapter: manifest JSON with a stray comma",
            setup: |fx| edited_text(fx, |t| t.replacen("\"patches\": [", "\"patches\": [,", 1)),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Json { file, line: 6, .. }) if file == MANIFEST_FILE)
        ),
        case!(
            "adapter: manifest cut in half",
            setup: |fx| edited_text(fx, |t| t[..t.len() / 2].to_owned()),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Json { message, .. }) if message.contains("EOF"))
        ),
        case!(
            "adapter: a manifest that is an array",
            setup: |fx| edited_text(fx, |_| "[]".into()),
            |fx| load(fx),
            e if field(e, "(top level)", "must be an object")
        ),
        case!(
            "adapter: a patch without its path",
            setup: |fx| edited(fx, |m| {
                m["patches"][2].as_object_mut().unwrap().remove("path");
            }),
            |fx| load(fx),
            e if field(e, "patches[2].path", "is missing")
        ),
        case!(
            "adapter: a tensor without its dtype",
            setup: |fx| edited(fx, |m| {
                first(m)["tensors"][1].as_object_mut().unwrap().remove("dtype");
            }),
            |fx| load(fx),
            e if field(e, "patches[0].tensors[1].dtype", "is missing")
        ),
        case!(
            "adapter: a manifest without patches",
            setup: |fx| edited(fx, |m| {
                m.as_object_mut().unwrap().remove("patches");
            }),
            |fx| load(fx),
            e if matches!(problems(e).first(), Some(AdapterProblem::Field { field, message, .. })
                if field == "patches" && message == "is missing")
        ),
        case!(
            "adapter: a format version written as a string",
            setup: |fx| edited(fx, |m| m["format_version"] = json!("1")),
            |fx| load(fx),
            e if field(e, "format_version", "must be a non-negative integer, found the string \"1\"")
        ),
        case!(
            "adapter: a format version from the future",
            setup: |fx| edited(fx, |m| m["format_version"] = json!(2)),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::FormatVersion { found: 2, supported: 1, .. }))
        ),
        case!(
            "adapter: another format",
            setup: |fx| edited(fx, |m| m["format"] = json!("peft")),
            |fx| load(fx),
            e if field(e, "format", "is \"peft\"")
        ),
        case!(
            "adapter: an unknown field in a patch",
            setup: |fx| edited(fx, |m| first(m)["rank"] = json!(2)),
            |fx| load(fx),
            e if field(e, "patches[0].rank", "is not a known field")
        ),
        case!(
            "adapter: an argument out of range (rank 0)",
            setup: |fx| edited(fx, |m| first(m)["args"]["rank"] = json!(0)),
            |fx| load(fx),
            e if invalid_patch(e, "blocks.0.q", |e| matches!(e,
                PatchError::PatchString(PatchStringError::ArgumentOutOfRange { patch, name, .. }) if patch == "lora" && name == "rank"))
        ),
        case!(
            "adapter: an argument of the wrong type",
            setup: |fx| edited(fx, |m| first(m)["args"]["rank"] = json!("two")),
            |fx| load(fx),
            e if invalid_patch(e, "blocks.0.q", |e| matches!(e,
                PatchError::PatchString(PatchStringError::ArgumentType { name, found, .. }) if name == "rank" && found.contains("two")))
        ),
        case!(
            "adapter: a misspelt argument",
            setup: |fx| edited(fx, |m| first(m)["args"]["rnak"] = json!(2)),
            |fx| load(fx),
            e if invalid_patch(e, "blocks.0.q", |e| matches!(e,
                PatchError::PatchString(PatchStringError::UnknownArgument { name, nearest: Some(nearest), .. }) if name == "rnak" && nearest == "rank"))
        ),
        case!(
            "adapter: an argument that is an object",
            setup: |fx| edited(fx, |m| first(m)["args"]["rank"] = json!({ "value": 2 })),
            |fx| load(fx),
            e if field(e, "patches[0].args.rank", "must be a number, a boolean, a string or an array")
        ),
        case!(
            "adapter: targets that are not a glob",
            setup: |fx| edited(fx, |m| first(m)["targets"] = json!("blocks.{0.q")),
            |fx| load(fx),
            e if invalid_patch(e, "blocks.0.q", |e| matches!(e,
                PatchError::Tree(TreeError::BadGlob { pattern, .. }) if pattern == "blocks.{0.q"))
        ),
        case!(
            "adapter: targets that do not select the patched path",
            setup: |fx| edited(fx, |m| first(m)["targets"] = json!("blocks.*.v")),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::TargetsMismatch { path, targets })
                if path == "blocks.0.q" && targets == "blocks.*.v")
        ),
        case!(
            "adapter: a patched path with an empty segment",
            setup: |fx| edited(fx, |m| first(m)["path"] = json!("blocks..q")),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::InvalidPath { path, reason })
                if path == "blocks..q" && reason == "segment 2 is empty")
        ),
        case!(
            "adapter: one patched path given twice",
            setup: |fx| edited(fx, |m| {
                m["patches"][1]["path"] = json!("blocks.0.q");
                m["patches"][1]["targets"] = json!("blocks.0.q");
            }),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::DuplicatePath { path }) if path == "blocks.0.q")
        ),
    ]
}

/// The tensors: the manifest's list against `adapter.safetensors`, and damaged files.
fn tensor_cases() -> Vec<Case> {
    vec![
        case!(
            "adapter: a tensor in the file that the manifest does not list",
            setup: |fx| retensored(fx, |e| e.push(("blocks.0.q.lora_c".into(), floats(&[2])))),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::UnexpectedTensor { name, file, .. })
                if name == "blocks.0.q.lora_c" && file == TENSORS_FILE)
        ),
        case!(
            "adapter: a tensor the manifest lists that the file lacks",
            setup: |fx| retensored(fx, |e| e.retain(|(n, _)| n != "blocks.2.q.lora_b")),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::MissingTensor { name, file, .. })
                if name == "blocks.2.q.lora_b" && file == TENSORS_FILE)
        ),
        case!(
            "adapter: a tensor of another shape than the manifest's",
            setup: |fx| retensored(fx, |e| set_entry(e, "blocks.1.q.lora_a", floats(&[3, 4]))),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Shape { name, found, expected })
                if name == "blocks.1.q.lora_a" && found == &[3, 4] && expected.starts_with("[2, 4]"))
        ),
        case!(
            "adapter: a shape in the manifest edited",
            setup: |fx| edited(fx, |m| first(m)["tensors"][1]["shape"] = json!([4, 3])),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Shape { name, found, expected })
                if name == "blocks.0.q.lora_b" && found == &[4, 2] && expected.starts_with("[4, 3]"))
        ),
        case!(
            "adapter: a negative dimension in the manifest",
            setup: |fx| edited(fx, |m| first(m)["tensors"][0]["shape"] = json!([-2, 4])),
            |fx| load(fx),
            e if field(e, "patches[0].tensors[0].shape", "must be a non-negative integer, found the number -2")
        ),
        case!(
            "adapter: a dimension past i64::MAX in the manifest",
            setup: |fx| edited(fx, |m| first(m)["tensors"][0]["shape"] = json!([2, 1u64 << 63])),
            |fx| load(fx),
            e if field(e, "patches[0].tensors[0].shape", "holds the dimension 9223372036854775808")
        ),
        case!(
            "adapter: a tensor of another dtype than the manifest's",
            setup: |fx| retensored(fx, |e| {
                set_entry(e, "blocks.1.v.bias_delta", Tensor::zeros([4], (Kind::Double, Device::Cpu)))
            }),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Dtype { name, found, expected })
                if name == "blocks.1.v.bias_delta" && found == "F64" && expected.starts_with("F32"))
        ),
        case!(
            "adapter: a dtype name the library does not read",
            setup: |fx| edited(fx, |m| first(m)["tensors"][0]["dtype"] = json!("F33")),
            |fx| load(fx),
            e if field(e, "patches[0].tensors[0].dtype", "is \"F33\"")
        ),
        case!(
            "adapter: a tensor not named after its patched path",
            setup: |fx| edited(fx, |m| first(m)["tensors"][0]["name"] = json!("fc.lora_a")),
            |fx| load(fx),
            e if problems(e).iter().any(|p| matches!(p, AdapterProblem::Tensor { name, message }
                if name == "fc.lora_a" && message.contains("`blocks.0.q.<name>`")))
        ),
        case!(
            "adapter: no manifest in the folder",
            setup: |fx| std::fs::remove_file(saved(fx).join(MANIFEST_FILE)).unwrap(),
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Read { file, .. }) if file == MANIFEST_FILE)
        ),
        case!(
            "adapter: a folder that does not exist",
            setup: |fx| fx.with_tree(),
            |fx| load(fx),
            e if problems(e).len() == 2
                && problems(e).iter().all(|p| matches!(p, AdapterProblem::Read { .. }))
        ),
        case!(
            "adapter: a tensors file cut short",
            setup: |fx| {
                let path = saved(fx).join(TENSORS_FILE);
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
            },
            |fx| load(fx),
            e if matches!(only(e), Some(AdapterProblem::Read { file, .. }) if file == TENSORS_FILE)
        ),
    ]
}

/// Folders that read fine but do not fit the tree: its slots, the tensors the patches
/// make. The patches are taken off again.
fn fit_cases() -> Vec<Case> {
    vec![
        case!(
            "adapter: a patched path that is no slot of the tree",
            setup: |fx| moved(fx, "blocks.2.q", "blocks.5.q"),
            |fx| load(fx),
            PatchError::Tree(TreeError::NoMatch { rule, nearest, .. }) if rule == "lora" && nearest.iter().any(|p| p == "blocks.2.q")
        ),
        case!(
            "adapter: a LoRA on the embedding slot, which is tied to the head",
            setup: |fx| moved(fx, "blocks.0.q", "emb"),
            |fx| load(fx),
            PatchError::Tree(TreeError::TiedWeights { path, tied_to, .. }) if path == "emb" && tied_to == "head.weight"
        ),
        case!(
            "adapter: a LoRA on one side of a tied weight",
            setup: |fx| moved(fx, "blocks.0.q", "head"),
            |fx| load(fx),
            PatchError::Tree(TreeError::TiedWeights { path, tied_to, .. }) if path == "head" && tied_to == "emb.weight"
        ),
        case!(
            "adapter: onto a tree already patched at a saved path",
            setup: |fx| {
                saved(fx);
                let specs = Registry::global().unwrap().parse(r#"lora(targets="blocks.1.q")"#).unwrap();
                let Fixture { vs, tree, .. } = fx;
                apply_specs(tree.as_mut().unwrap(), vs, &specs).unwrap();
            },
            |fx| load(fx),
            PatchError::Tree(TreeError::PatchFailed { path, .. }) | PatchError::Tree(TreeError::AlreadyPatched { path, .. }) if path == "blocks.1.q"
        ),
        case!(
            "adapter: a rank in the arguments that the tensors do not have",
            setup: |fx| edited(fx, |m| m["patches"][3]["args"]["rank"] = json!(3)),
            |fx| load(fx),
            e if tensor_problems(e).len() == 2 && tensor_problems(e).iter().all(|p| matches!(p,
                TensorProblem::Shape { name, .. } if name.starts_with("blocks.2.q.lora_")))
        ),
        case!(
            "adapter: F64 tensors for a patch the model makes in F32, loaded with AdapterDtype::Exact",
            setup: |fx| {
                edited(fx, |m| m["patches"][2]["tensors"][0]["dtype"] = json!("F64"));
                retensor(&fx.file("adapter"), |e| {
                    set_entry(e, "blocks.1.v.bias_delta", Tensor::zeros([4], (Kind::Double, Device::Cpu)))
                });
            },
            |fx| load_exact(fx),
            e if matches!(tensor_problems(e), [TensorProblem::Kind { name, actual: Kind::Double, expected: Kind::Float }]
                if name == "blocks.1.v.bias_delta")
        ),
        case!(
            "adapter: I64 tensors for a patch the model makes in F32 (only floats convert)",
            setup: |fx| {
                edited(fx, |m| m["patches"][2]["tensors"][0]["dtype"] = json!("I64"));
                retensor(&fx.file("adapter"), |e| {
                    set_entry(e, "blocks.1.v.bias_delta", Tensor::zeros([4], (Kind::Int64, Device::Cpu)))
                });
            },
            |fx| load(fx),
            e if matches!(tensor_problems(e), [TensorProblem::Kind { name, actual: Kind::Int64, expected: Kind::Float }]
                if name == "blocks.1.v.bias_delta")
        ),
        case!(
            "adapter: a base weight among the patch's tensors",
            setup: |fx| {
                edited(fx, |m| first(m)["tensors"].as_array_mut().unwrap().push(
                    json!({ "name": "blocks.0.q.weight", "shape": [4, 4], "dtype": "F32" })));
                retensor(&fx.file("adapter"), |e| e.push(("blocks.0.q.weight".into(), floats(&[4, 4]))));
            },
            |fx| load(fx),
            e if matches!(tensor_problems(e), [TensorProblem::Unexpected { name }] if name == "blocks.0.q.weight")
        ),
        case!(
            "adapter: a tensor the patch makes missing from both files",
            setup: |fx| {
                edited(fx, |m| {
                    first(m)["tensors"].as_array_mut().unwrap().pop();
                });
                retensor(&fx.file("adapter"), |e| e.retain(|(n, _)| n != "blocks.0.q.lora_b"));
            },
            |fx| load(fx),
            e if matches!(tensor_problems(e), [TensorProblem::Missing { name }] if name == "blocks.0.q.lora_b")
        ),
    ]
}
