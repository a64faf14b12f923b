//! Properties of loading damaged checkpoint files: whatever bytes a file holds, a load
//! returns (never panics, never aborts), and a load that fails changes no tensor.
//!
//! Each case damages a valid checkpoint of a small model (bytes overwritten, the file cut,
//! bytes inserted, the header length changed) and loads it. Run in CI with proptest's
//! default of 256 cases per property; `PROPTEST_CASES` raises it for a longer run.
mod common;

use common::{assert_unchanged, snapshot, Mlp, TempFile};
use proptest::prelude::*;
use tch::{nn, Device};
use tch_patch::{load::load_safetensors, load::LoadError, load::LoadOptions, save::save_module};

/// One way of damaging a file's bytes; positions are taken modulo the file's length.
#[derive(Debug, Clone)]
enum Damage {
    Overwrite { at: usize, bytes: Vec<u8> },
    Truncate { to: usize },
    Insert { at: usize, bytes: Vec<u8> },
    HeaderLength { value: u64 },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        any::<usize>().prop_map(|to| Damage::Truncate { to }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        prop_oneof![0..512u64, any::<u64>()].prop_map(|value| Damage::HeaderLength { value }),
    ]
}

fn apply(damage: &Damage, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match damage {
        Damage::Overwrite { at, bytes: new } => {
            for (i, b) in new.iter().enumerate() {
                bytes[(at + i) % len] = *b;
            }
        }
        Damage::Truncate { to } => bytes.truncate(to % len),
        Damage::Insert { at, bytes: new } => {
            let at = at % len;
            bytes.splice(at..at, new.iter().copied());
        }
        Damage::HeaderLength { value } if len >= 8 => {
            bytes[..8].copy_from_slice(&value.to_le_bytes())
        }
        Damage::HeaderLength { .. } => {}
    }
}

proptest! {
    #[test]
    fn a_damaged_file_is_an_error_or_a_load_never_a_panic(
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let vs = nn::VarStore::new(Device::Cpu);
        let source = Mlp::new(&vs.root(), 3, 4, 2);
        let file = TempFile::new("damaged");
        save_module(&source, file.path(), "").unwrap();
        let mut bytes = std::fs::read(file.path()).unwrap();
        for d in &damages {
            if !bytes.is_empty() {
                apply(d, &mut bytes);
            }
        }
        std::fs::write(file.path(), &bytes).unwrap();

        let other = nn::VarStore::new(Device::Cpu);
        let mut model = Mlp::new(&other.root(), 3, 4, 2);
        let before = snapshot(&model);
        match load_safetensors(&mut model, file.path(), &LoadOptions::new()) {
            Ok(report) => prop_assert_eq!(report.loaded.len(), 4),
            Err(LoadError::Read { .. } | LoadError::InvalidTensors { .. }) => {
                assert_unchanged(&model, &before);
            }
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
        }
    }
}
