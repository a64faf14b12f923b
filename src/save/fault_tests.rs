//! Atomic saves interrupted at every step, on real files and real tensors: the previous
//! file stays intact and loadable, and no temporary file is left behind.
use super::atomic::save_with;
use super::fs::{Fs, RealFs};
use super::SaveStep;
use crate::save::SaveError;
use crate::{load::load_safetensors, load::LoadOptions, PatchError};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{nn, Device, Kind, Tensor};

/// The real file system, failing at one step (or none) and recording the steps taken.
struct FailingFs {
    fail_at: Option<SaveStep>,
    taken: RefCell<Vec<SaveStep>>,
}

impl FailingFs {
    fn new(fail_at: Option<SaveStep>) -> Self {
        FailingFs {
            fail_at,
            taken: RefCell::new(Vec::new()),
        }
    }

    /// Records `step`; an injected error if it is the one to fail.
    fn step(&self, step: SaveStep) -> io::Result<()> {
        self.taken.borrow_mut().push(step);
        if self.fail_at == Some(step) {
            return Err(io::Error::other(format!("injected failure at {step:?}")));
        }
        Ok(())
    }
}

impl Fs for FailingFs {
    fn create_new(&self, path: &Path) -> io::Result<File> {
        self.step(SaveStep::CreateTemp)?;
        RealFs.create_new(path)
    }

    fn copy_permissions(&self, file: &File, like: &Path) -> io::Result<()> {
        RealFs.copy_permissions(file, like)
    }

    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        if self.fail_at == Some(SaveStep::Write) {
            // A torn write: half the bytes reach the file, then the disk is full.
            file.write_all(&bytes[..bytes.len() / 2])?;
        }
        self.step(SaveStep::Write)?;
        RealFs.write_all(file, bytes)
    }

    fn sync_file(&self, file: &File) -> io::Result<()> {
        self.step(SaveStep::SyncFile)?;
        RealFs.sync_file(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(SaveStep::Rename)?;
        RealFs.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(SaveStep::SyncDir)?;
        RealFs.sync_dir(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
}

/// A fresh, empty folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tch-patch-atomic-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn linear(seed: i64) -> (nn::VarStore, nn::Linear) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let linear = nn::linear(vs.root(), 8, 4, Default::default());
    (vs, linear)
}

fn save(fs: &dyn Fs, path: &Path, linear: &nn::Linear) -> crate::Result<()> {
    let bias = linear.bs.as_ref().unwrap();
    save_with(fs, path, &[("weight", &linear.ws), ("bias", bias)])
}

/// Loads `path` into a fresh Linear (through the library's own validating loader).
fn load(path: &Path) -> nn::Linear {
    let (_vs, mut fresh) = linear(999);
    load_safetensors(&mut fresh, path, &LoadOptions::new()).expect("a complete file");
    fresh
}

#[test]
fn a_save_takes_every_step_in_order() {
    let dir = TempDir::new();
    let path = dir.0.join("model.safetensors");
    let (_vs, model) = linear(1);
    let fs = FailingFs::new(None);
    save(&fs, &path, &model).unwrap();
    assert_eq!(*fs.taken.borrow(), SaveStep::ALL);
    assert!(load(&path).ws.equal(&model.ws));
    assert_eq!(dir.entries(), ["model.safetensors"]);
}

#[test]
fn a_save_interrupted_at_any_step_leaves_the_previous_file_and_no_temp_file() {
    for step in SaveStep::ALL {
        let dir = TempDir::new();
        let path = dir.0.join("model.safetensors");
        let (_old_vs, old) = linear(2);
        save(&RealFs, &path, &old).unwrap();
        let (_new_vs, new) = linear(3);
        assert!(!new.ws.equal(&old.ws));

        let error = save(&FailingFs::new(Some(step)), &path, &new).unwrap_err();

        let PatchError::Save(SaveError::Step {
            path: named,
            step: failed,
            ..
        }) = &error
        else {
            panic!("{step:?}: expected PatchError::Save(SaveError::Step), got {error}");
        };
        assert_eq!((named, *failed), (&path, step));
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&step.to_string()), "{message}");
        assert_eq!(
            dir.entries(),
            ["model.safetensors"],
            "{step:?}: no temp file left"
        );
        let loaded = load(&path);
        if step == SaveStep::SyncDir {
            // The rename happened: the complete new file is in place, only its durability
            // across a power loss is not assured.
            assert!(loaded.ws.equal(&new.ws), "{step:?}");
        } else {
            assert!(
                loaded.ws.equal(&old.ws),
                "{step:?}: the previous file changed"
            );
            assert!(loaded.bs.unwrap().equal(old.bs.as_ref().unwrap()));
        }
    }
}

#[test]
fn a_first_save_interrupted_before_the_rename_leaves_no_file_at_all() {
    for step in [
        SaveStep::CreateTemp,
        SaveStep::Write,
        SaveStep::SyncFile,
        SaveStep::Rename,
    ] {
        let dir = TempDir::new();
        let path = dir.0.join("adapter.safetensors");
        let (_vs, model) = linear(4);
        let error = save(&FailingFs::new(Some(step)), &path, &model).unwrap_err();
        assert!(matches!(error, PatchError::Save(SaveError::Step { step: s, .. }) if s == step));
        assert!(dir.entries().is_empty(), "{step:?}: {:?}", dir.entries());
    }
}

#[test]
fn bad_tensors_are_refused_before_any_file_is_touched() {
    let dir = TempDir::new();
    let path = dir.0.join("model.safetensors");
    let fs = FailingFs::new(None);
    let complex = Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu));
    let ok = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    let undefined = Tensor::new();
    let error = save_with(
        &fs,
        &path,
        &[("a", &ok), ("a", &ok), ("b", &undefined), ("c", &complex)],
    )
    .unwrap_err();
    let PatchError::InvalidTensors { problems, .. } = error else {
        panic!("expected InvalidTensors, got {error}");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(fs.taken.borrow().is_empty(), "no file operation");
    assert!(dir.entries().is_empty());
}

#[cfg(unix)]
#[test]
fn the_replaced_file_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let path = dir.0.join("secret.safetensors");
    let (_vs, model) = linear(5);
    save(&RealFs, &path, &model).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    save(&RealFs, &path, &model).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
