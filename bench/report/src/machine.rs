//! Where and with what the numbers were taken: CPU, date, libtorch and tch versions.
use std::path::Path;
use std::process::Command;

/// What the report's header says about the run.
pub(crate) struct Machine {
    pub cpu: String,
    pub cores: String,
    pub date: String,
    pub libtorch: String,
    pub tch: String,
    pub torch_sys: String,
    /// The glibc `malloc` tunables both sides ran with (`MALLOC_*_` variables), or empty.
    pub malloc: String,
}

/// Reads `lscpu`, `date`, the workspace's `Cargo.lock` and libtorch's `version.py` (in
/// `$LIBTORCH`, which `.cargo/config.toml` sets for `cargo run`).
pub(crate) fn describe(workspace: &Path) -> Machine {
    let lscpu = command_output("lscpu", &[]);
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().strip_prefix(':'))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap_or_default();
    Machine {
        cpu: field("Model name"),
        cores: field("CPU(s)"),
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            .trim()
            .to_owned(),
        libtorch: libtorch_version(workspace),
        tch: locked_version(&lock, "tch"),
        torch_sys: locked_version(&lock, "torch-sys"),
        malloc: malloc_settings(),
    }
}

/// `MALLOC_MMAP_THRESHOLD_=268435456, ...`: the glibc tunables in the environment (`make
/// bench` exports them for both sides).
fn malloc_settings() -> String {
    let mut settings: Vec<String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("MALLOC_") && name.ends_with('_'))
        .map(|(name, value)| format!("`{name}={value}`"))
        .collect();
    settings.sort();
    settings.join(", ")
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .unwrap_or_default()
}

/// `__version__` of libtorch's `version.py` (the wheel's libtorch carries one).
fn libtorch_version(workspace: &Path) -> String {
    let root = std::env::var("LIBTORCH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace.join(".libtorch/torch"));
    let text = std::fs::read_to_string(root.join("version.py")).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(['\'', '"']).to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The version `Cargo.lock` pins for package `name`.
fn locked_version(lock: &str, name: &str) -> String {
    let header = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == header {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return version.trim_matches('"').to_owned();
            }
        }
    }
    "unknown".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_locked_version() {
        let lock = "[[package]]\nname = \"tch\"\nversion = \"0.26.0\"\n\n[[package]]\nname = \"tch-patch\"\nversion = \"0.1.0\"\n";
        assert_eq!(locked_version(lock, "tch"), "0.26.0");
        assert_eq!(locked_version(lock, "tch-patch"), "0.1.0");
        assert_eq!(locked_version(lock, "torch-sys"), "unknown");
    }
}
