//! The loss chart: train (per log) and val (per eval) loss over steps from a run's metrics, as a
//! PNG drawn with plotters. Labels use the first system font found; without one the chart has
//! lines only.

use std::path::Path;

use plotters::prelude::*;
use wgpt::run::format::Metrics;

/// Font files tried for the labels, in order.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn font_loaded() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        FONTS.iter().any(|path| {
            std::fs::read(path)
                .ok()
                .map(|bytes| {
                    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
                        .is_ok()
                })
                .unwrap_or(false)
        })
    })
}

/// Redraws `png` from `metrics`; a chart that cannot be drawn is reported, never fatal.
pub fn draw(metrics: &Metrics, png: &Path) {
    if let Err(e) = try_draw(metrics, png) {
        eprintln!("note: could not draw {}: {e}", png.display());
    }
}

fn try_draw(metrics: &Metrics, png: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let point = |&(step, loss): &(u64, f32)| (step as f64, loss as f64);
    let history = metrics.history();
    let train: Vec<(f64, f64)> = history.train.iter().map(point).collect();
    let val: Vec<(f64, f64)> = history.val.iter().map(point).collect();
    let all = train.iter().chain(&val);
    let max_x = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all.map(|p| p.1).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if !lo.is_finite() {
        return Ok(()); // nothing logged yet
    }
    let root = BitMapBackend::new(png, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let labels = font_loaded();
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder.caption("wgpt loss", ("sans-serif", 22)).x_label_area_size(40).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0.0..max_x, (lo * 0.95)..(hi * 1.02))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("step").y_desc("loss");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    let series = chart.draw_series(LineSeries::new(train, &BLUE))?;
    if labels {
        series.label("train").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    }
    let series = chart.draw_series(LineSeries::new(val, RED.stroke_width(2)))?;
    if labels {
        series.label("val").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}
