//! `bench/patch_cost.png`: patching cost against parameter size, log-log, for Rust
//! patching, PyTorch's `__class__` swap and the copies.
use crate::format;
use crate::patch_cost::{series, size_label};
use crate::results::Results;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

pub(crate) const FONT: &str = "sans-serif";

struct Line {
    label: String,
    color: RGBColor,
    rust: bool,
    points: Vec<(f64, f64)>,
}

fn lines(rust: &Results, python: &Results, threads: u32) -> Vec<Line> {
    let specs = [
        (
            "Rust: MostlyFrozenEmbedding patch + unpatch",
            "mostly_frozen_embedding",
            true,
            RGBColor(31, 119, 180),
        ),
        (
            "Rust: field-less patch + into_base",
            "fieldless",
            true,
            RGBColor(44, 160, 44),
        ),
        (
            "Rust: copy of the table",
            "copy",
            true,
            RGBColor(127, 127, 127),
        ),
        (
            "PyTorch: blog's __class__ swap + undo",
            "mostly_frozen_embedding",
            false,
            RGBColor(255, 127, 14),
        ),
        (
            "PyTorch: field-less __class__ swap",
            "fieldless",
            false,
            RGBColor(148, 103, 189),
        ),
        (
            "PyTorch: copy.deepcopy",
            "copy",
            false,
            RGBColor(214, 39, 40),
        ),
    ];
    specs
        .into_iter()
        .map(|(label, variant, is_rust, color)| {
            let side = if is_rust { rust } else { python };
            // x is log2(bytes), so that every measured size gets a tick of its own.
            let points = series(side, variant, threads)
                .into_iter()
                .map(|(bytes, ns)| ((bytes as f64).log2(), ns))
                .collect();
            Line {
                label: label.to_owned(),
                color,
                rust: is_rust,
                points,
            }
        })
        .filter(|line| !line.points.is_empty())
        .collect()
}

/// Draws the plot at `threads` intra-op threads; an error when nothing was measured.
pub(crate) fn draw(
    path: &std::path::Path,
    rust: &Results,
    python: &Results,
    threads: u32,
) -> Result<(), String> {
    register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded DejaVu Sans font did not load".to_owned())?;
    let lines = lines(rust, python, threads);
    let all = lines.iter().flat_map(|l| &l.points);
    let (x_min, x_max) = all.clone().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (y_min, y_max) = all.fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if lines.is_empty() {
        return Err("no patch-cost results to plot".to_owned());
    }
    let error = |e: DrawingAreaErrorKind<_>| e.to_string();
    let root = BitMapBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(error)?;
    let caption = format!(
        "Patching cost vs parameter size ({threads} intra-op thread{})",
        if threads == 1 { "" } else { "s" }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d(
            x_min - 0.5..x_max + 0.5,
            (y_min / 3.0..y_max * 3.0).log_scale(),
        )
        .map_err(error)?;
    let x_ticks = (x_max - x_min).round() as usize + 2;
    chart
        .configure_mesh()
        .x_labels(x_ticks)
        .x_label_formatter(&|x| {
            let rounded = x.round();
            if (x - rounded).abs() < 1e-6 && (rounded as u32).is_multiple_of(5) {
                size_label(2f64.powf(rounded) as u64)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format::duration(*y))
        .x_desc("parameter size (bytes, log scale)")
        .y_desc("time per patch + undo, or per copy (log scale)")
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 16))
        .draw()
        .map_err(error)?;
    for line in &lines {
        let color = line.color;
        let style = color.stroke_width(if line.rust { 3 } else { 2 });
        chart
            .draw_series(LineSeries::new(line.points.clone(), style))
            .map_err(error)?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        if line.rust {
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|&p| Circle::new(p, 5, color.filled())),
                )
                .map_err(error)?;
        } else {
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|&p| TriangleMarker::new(p, 6, color.filled())),
                )
                .map_err(error)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(error)?;
    root.present().map_err(error)
}
