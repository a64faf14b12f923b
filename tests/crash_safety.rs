//! Saves killed with SIGKILL at random moments: a checkpoint is afterwards the old file or
//! the new one, never a part of one; an adapter folder is a whole save, or refused as a
//! pair from two saves (`MixedSaves`), never a manifest silently paired with the tensors of
//! another save. A child process (this test binary, in `crash_child`) saves in a loop; the
//! parent kills it, checks the files, and starts the next one. Bounded in count and time.
mod common;

use common::TempDir;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use tch_patch::adapter::AdapterError;
use tch_patch::adapter::{read_adapter, save_adapter, AdapterEntry, AdapterProblem};
use tch_patch::patches::LoraConfig;
use tch_patch::registry::PatchArgs;
use tch_patch::{save::save_safetensors_atomic, PatchError};

const CHILD: &str = "TCH_PATCH_CRASH_CHILD";
const KILLS: usize = 200;
const TIME: Duration = Duration::from_secs(120);

/// Generation `g` of the saved state: every value is `g`, and the LoRA's alpha is `g` too,
/// so a manifest of one save and tensors of another tell apart.
fn entry(g: i64) -> AdapterEntry {
    let config = LoraConfig {
        rank: 2,
        alpha: g as f64,
        ..Default::default()
    };
    let spec = config.to_spec("fc").unwrap();
    let full = |shape: [i64; 2]| Tensor::full(shape, g as f64, (Kind::Float, Device::Cpu));
    AdapterEntry::new(
        "fc",
        spec,
        vec![
            ("lora_a".into(), full([2, 64])),
            ("lora_b".into(), full([64, 2])),
        ],
    )
}

fn save(dir: &Path, g: i64) {
    let w = Tensor::full([256, 256], g as f64, (Kind::Float, Device::Cpu));
    save_safetensors_atomic(dir.join("model.safetensors"), &[("w", &w)]).unwrap();
    save_adapter(dir.join("adapter"), &[entry(g)]).unwrap();
}

/// The one value every element of `tensor` has.
fn generation(tensor: &Tensor) -> i64 {
    let (min, max) = (
        tensor.min().double_value(&[]),
        tensor.max().double_value(&[]),
    );
    assert_eq!(min, max, "a tensor mixing two saves");
    min as i64
}

/// Not a test of its own: the saving child, when the parent runs it.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = Path::new(&dir);
    let start: i64 = std::env::var("TCH_PATCH_CRASH_FROM")
        .unwrap()
        .parse()
        .unwrap();
    println!("ready");
    for g in start.. {
        save(dir, g);
    }
}

#[test]
fn saves_killed_at_random_moments_leave_a_whole_old_or_new_file() {
    let dir = TempDir::new("crash");
    std::fs::create_dir_all(dir.path()).unwrap();
    save(dir.path(), 0);
    let exe = std::env::current_exe().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let (mut kills, mut mixed, mut newest) = (0, 0, 0);
    let started = Instant::now();
    while kills < KILLS && started.elapsed() < TIME {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .env("TCH_PATCH_CRASH_FROM", (newest + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // libtest speaks first ("running 1 test"); the child's own line follows.
        let ready = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .take(20)
            .any(|line| line.is_ok_and(|line| line.contains("ready")));
        assert!(ready, "the child never got ready");
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        std::thread::sleep(Duration::from_micros((state >> 33) % 40_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;

        let loaded = Tensor::read_safetensors(dir.join("model.safetensors"))
            .expect("the checkpoint is always a whole file");
        let g = generation(&loaded[0].1);
        assert!(g >= newest, "the checkpoint went back from {newest} to {g}");
        newest = g;
        match read_adapter(dir.join("adapter")) {
            Ok(adapter) => {
                let entry = &adapter.entries[0];
                let alpha = entry.spec.config::<LoraConfig>().unwrap().alpha;
                let a = generation(entry.tensor("lora_a").unwrap());
                let b = generation(entry.tensor("lora_b").unwrap());
                assert_eq!(
                    (a, b),
                    (alpha as i64, alpha as i64),
                    "a manifest of one save and tensors of another"
                );
            }
            Err(PatchError::Adapter(AdapterError { problems, .. }))
                if matches!(&problems[..], [AdapterProblem::MixedSaves { .. }]) =>
            {
                mixed += 1;
            }
            Err(other) => panic!("after kill {kills}: {other}"),
        }
    }
    assert!(kills >= 20, "only {kills} kills in {TIME:?}");
    // Temporary files a killed save left behind do not trip the next save.
    save(dir.path(), newest + 1);
    read_adapter(dir.join("adapter")).unwrap();
    println!(
        "{kills} kills in {:.1} s: {mixed} interrupted between the adapter's two files, refused; checkpoint generations up to {newest}",
        started.elapsed().as_secs_f64()
    );
}
