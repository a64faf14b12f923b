//! The section on loading at scale (`bench/load_memory.py`, each load in its own process):
//! peak resident memory and wall time per way to load one checkpoint, Rust and PyTorch,
//! and `bench/load_memory.png`, peak memory per method.
use plotters::prelude::*;
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

/// What each case is, in the order of the table.
const CASES: &[(&str, &str)] = &[
    (
        "init",
        "Rust: tch's layers built (initialized), no load: the model's own size",
    ),
    (
        "copy",
        "Rust: tch's layers, then `load_safetensors` (streaming copy into them)",
    ),
    (
        "skeleton_copy",
        "Rust: `Skeleton` + `LoadMode::Copy` (read straight into the skeleton)",
    ),
    ("skeleton_assign", "Rust: `Skeleton` + `LoadMode::Assign`"),
    (
        "map",
        "Rust: `Skeleton` + `LoadMode::Map` (pages come in when touched)",
    ),
    (
        "quantize",
        "Rust: skeleton of int8 weights + scales, a hook quantizing each weight as read",
    ),
    (
        "varstore",
        "Rust: tch's layers, then tch's own `VarStore::load`",
    ),
    (
        "torch_init",
        "PyTorch: `nn.Sequential` of `nn.Linear` built, no load",
    ),
    (
        "torch_load_state_dict",
        "PyTorch: `model.load_state_dict(safetensors.torch.load_file(p))`",
    ),
    (
        "torch_meta_assign",
        "PyTorch: meta-device model + `load_state_dict(load_file(p), assign=True)`",
    ),
];

fn gib(bytes: f64) -> String {
    format!("{:.2} GiB", bytes / f64::from(1u32 << 30))
}

fn find<'a>(results: &'a [Value], case: &str, kind: &str) -> Option<&'a Value> {
    results
        .iter()
        .find(|r| r["case"] == case && r["kind"] == kind)
}

/// Reads `path`; `None` when the bench has not written it.
pub(crate) fn load(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the section.
pub(crate) fn section(data: &Value, plot: Option<&str>, out: &mut String) {
    let empty = Vec::new();
    let results = data["results"].as_array().unwrap_or(&empty);
    let (layers, hidden) = (
        data["layers"].as_i64().unwrap_or(0),
        data["hidden"].as_i64().unwrap_or(0),
    );
    let _ = writeln!(out, "## Loading at scale\n");
    let _ = writeln!(
        out,
        "One checkpoint of {layers} linear layers {hidden} x {hidden} (`bench/load_memory.py` writes it, \
         f32 and bf16), loaded each way in a process of its own, from a warm page cache. \
         Peak resident memory is the process's `VmHWM` (`getrusage`'s `ru_maxrss`), over the \
         checkpoint's size; load time is the load call alone (building the model is apart). \
         A mapped load reads nothing until touched (nor does PyTorch's `assign=True` of \
         `load_file`'s tensors, which are views of safetensors' own mapping): the peak after \
         summing every weight is given too, and a mapped load's time to touch them. `python3 bench/load_memory.py` (`make bench`) measures it.\n"
    );
    for kind in ["f32", "bf16"] {
        let Some(size) = data["files"][kind].as_f64() else {
            continue;
        };
        let torch_load =
            find(results, "torch_load_state_dict", kind).and_then(|r| r["load_seconds"].as_f64());
        let _ = writeln!(out, "### {kind}: a checkpoint of {}\n", gib(size));
        let _ = writeln!(
            out,
            "| way to load | peak memory | peak / checkpoint | peak after touching every value | load time | vs PyTorch's `load_state_dict` | build time |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (case, what) in CASES {
            let Some(r) = find(results, case, kind) else {
                continue;
            };
            let peak = r["peak_rss"].as_f64().unwrap_or(0.0);
            let touched = r["peak_rss_after_touch"].as_f64().unwrap_or(peak);
            let load = r["load_seconds"].as_f64().unwrap_or(0.0);
            let touch = r["touch_seconds"].as_f64().unwrap_or(0.0);
            let build = r["build_seconds"].as_f64().unwrap_or(0.0);
            let loads = !case.ends_with("init");
            let time = match (*case, loads) {
                (_, false) => "–".to_owned(),
                ("map", _) => format!("{load:.3} s ({touch:.2} s to touch)"),
                _ => format!("{load:.2} s"),
            };
            let versus = match (torch_load, loads) {
                (Some(torch), true) if torch > 0.0 => format!("{:.2}x", load / torch),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {what} | {} | {:.2}x | {} | {time} | {versus} | {build:.2} s |",
                gib(peak),
                peak / size,
                gib(touched)
            );
        }
        let _ = writeln!(out);
    }
    if let Some(plot) = plot {
        let _ = writeln!(out, "![peak memory per way to load]({plot})\n");
    }
}

/// `bench/load_memory.png`: peak resident memory per way to load, f32 checkpoint.
pub(crate) fn draw(path: &Path, data: &Value) -> Result<(), String> {
    let empty = Vec::new();
    let results = data["results"].as_array().unwrap_or(&empty);
    let size = data["files"]["f32"].as_f64().ok_or("no f32 checkpoint")?;
    let bars: Vec<(&str, f64, bool)> = CASES
        .iter()
        .filter_map(|(case, _)| {
            let r = find(results, case, "f32")?;
            let peak = r["peak_rss"].as_f64()? / f64::from(1u32 << 30);
            Some((*case, peak, r["side"] == "rust"))
        })
        .collect();
    if bars.is_empty() {
        return Err("no load results to plot".into());
    }
    let error = |e: DrawingAreaErrorKind<_>| e.to_string();
    let root = BitMapBackend::new(path, (1100, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(error)?;
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.15;
    let caption = format!(
        "Peak resident memory per way to load a {:.1} GiB f32 checkpoint (blue: Rust, orange: PyTorch, line: its size)",
        size / f64::from(1u32 << 30)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (crate::plot::FONT, 20))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(190)
        .build_cartesian_2d(0.0..top, -0.5..bars.len() as f64 - 0.5)
        .map_err(error)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.to_owned()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("peak resident memory (GiB)")
        .axis_desc_style((crate::plot::FONT, 18))
        .label_style((crate::plot::FONT, 15))
        .draw()
        .map_err(error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, peak, rust))| {
            let color = if *rust {
                RGBColor(31, 119, 180)
            } else {
                RGBColor(255, 127, 14)
            };
            let y = i as f64;
            Rectangle::new([(0.0, y - 0.35), (*peak, y + 0.35)], color.filled())
        }))
        .map_err(error)?;
    let line = size / f64::from(1u32 << 30);
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(line, -0.5), (line, bars.len() as f64 - 0.5)],
            BLACK.stroke_width(2),
        )))
        .map_err(error)?;
    root.present().map_err(error)
}
