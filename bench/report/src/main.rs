//! Writes `bench/RESULTS.md` and `bench/patch_cost.png` from criterion's results
//! (`target/criterion/**/new/{benchmark,estimates}.json`), criterion's instruction counts
//! (the same files under `target/criterion-instructions`), the alternation timings
//! (`target/paired`) and `bench/python.json`.
//!
//!     cargo run --release -p bench-report -- [--criterion DIR] [--instructions DIR]
//!         [--paired DIR] [--python FILE] [--markdown FILE] [--plot FILE] [--note TEXT]
//!
//! Paths default to the workspace's `target/criterion`, `target/criterion-instructions`,
//! `target/paired`, `bench/python.json`, `bench/RESULTS.md` and `bench/patch_cost.png`. The note defaults to `$BENCH_NOTE` (how
//! `make bench BENCH_NOTE=...` passes it, with no shell quoting in between).
mod criterion;
mod format;
mod int8;
mod load_memory;
mod machine;
mod markdown;
mod models;
mod paired;
mod patch_cost;
mod plot;
mod python;
mod results;

use std::path::{Path, PathBuf};

struct Args {
    criterion: PathBuf,
    instructions: PathBuf,
    paired: PathBuf,
    python: PathBuf,
    markdown: PathBuf,
    plot: PathBuf,
    note: Option<String>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse_args() -> Result<Args, String> {
    let root = workspace();
    let mut args = Args {
        criterion: root.join("target/criterion"),
        instructions: root.join("target/criterion-instructions"),
        paired: root.join("target/paired"),
        python: root.join("bench/python.json"),
        markdown: root.join("bench/RESULTS.md"),
        plot: root.join("bench/patch_cost.png"),
        note: std::env::var("BENCH_NOTE").ok(),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--criterion" => args.criterion = value.into(),
            "--instructions" => args.instructions = value.into(),
            "--paired" => args.paired = value.into(),
            "--python" => args.python = value.into(),
            "--markdown" => args.markdown = value.into(),
            "--plot" => args.plot = value.into(),
            "--note" => args.note = Some(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    args.note = args.note.filter(|note| !note.trim().is_empty());
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let rust = criterion::load(&args.criterion)?;
    let instructions = criterion::load(&args.instructions)?;
    let alternated = paired::load(&args.paired)?;
    let python = python::load(&args.python)?;
    eprintln!(
        "{} Rust cases, {} counted in instructions, {} timed in alternation, {} PyTorch cases",
        rust.len(),
        instructions.len(),
        alternated.len(),
        python.results.len()
    );
    let plot_name = match plot::draw(&args.plot, &rust, &python.results, 1) {
        Ok(()) => args
            .plot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        Err(error) => {
            eprintln!("no plot: {error}");
            None
        }
    };
    let load_data = load_memory::load(&workspace().join("bench/load_memory.json"));
    let load_plot = load_data.as_ref().and_then(|data| {
        let path = workspace().join("bench/load_memory.png");
        match load_memory::draw(&path, data) {
            Ok(()) => Some("load_memory.png".to_owned()),
            Err(error) => {
                eprintln!("no load plot: {error}");
                None
            }
        }
    });
    let machine = machine::describe(&workspace());
    let report = markdown::Report {
        machine: &machine,
        rust: &rust,
        instructions: &instructions,
        alternated: &alternated,
        python: &python,
        note: args.note.as_deref(),
        plot: plot_name.as_deref(),
        load: load_data.as_ref(),
        load_plot: load_plot.as_deref(),
    };
    std::fs::write(&args.markdown, report.render())
        .map_err(|e| format!("{}: {e}", args.markdown.display()))?;
    eprintln!(
        "wrote {} and {}",
        args.markdown.display(),
        args.plot.display()
    );
    Ok(())
}

fn main() {
    if let Err(error) = run() {
        eprintln!("bench-report: {error}");
        std::process::exit(1);
    }
}
