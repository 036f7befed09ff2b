//! The loss chart: train (per log) and val (per eval) loss over steps from a run's metrics, as a
//! PNG drawn with plotters, and below it, where progress records carry training dynamics
//! ([`wgpt::dynamics::Dynamics`]), a second panel of them. Labels use the first system font
//! found; without one the chart has lines only.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use wgpt::dynamics::Dynamics;
use wgpt::run::format::{Metrics, Record};

/// Font files tried for the labels, in order.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

pub(super) fn font_loaded() -> bool {
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
    let dynamics: Vec<&Dynamics> = metrics
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Progress { dynamics, .. } => dynamics.as_ref(),
            Record::Eval(_) => None,
        })
        .collect();
    let all = train.iter().chain(&val);
    let max_x = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all.map(|p| p.1).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if !lo.is_finite() {
        return Ok(()); // nothing logged yet
    }
    let height = if dynamics.is_empty() { 540 } else { 540 + DYNAMICS_HEIGHT };
    let root = BitMapBackend::new(png, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (loss_area, dynamics_area) = root.split_vertically(540);
    let labels = font_loaded();
    if !dynamics.is_empty() {
        draw_dynamics(&dynamics_area, &dynamics, labels)?;
    }
    let mut builder = ChartBuilder::on(&loss_area);
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

/// Height of the dynamics panel under the loss chart, in pixels.
const DYNAMICS_HEIGHT: u32 = 640;

/// One line of a small chart: its name and (step, value) points.
type Line = (String, Vec<(f64, f64)>);

/// The dynamics panel, four small charts over steps: the gradient norm of each layer and the
/// update-to-weight ratio of each layer (both on a log scale), the global gradient norm before
/// clipping (the clipping threshold dashed) and the learning rate. `series` is one
/// [`Dynamics`] per logged step.
pub fn draw_dynamics<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[&Dynamics],
    labels: bool,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let per_layer = |value: fn(&wgpt::dynamics::LayerDynamics) -> f32| -> Vec<Line> {
        let mut lines: Vec<Line> = Vec::new();
        for d in series {
            for (i, layer) in d.layers().iter().enumerate() {
                if lines.len() <= i {
                    lines.push((layer.name.clone(), vec![]));
                }
                lines[i].1.push((d.step as f64, value(layer) as f64));
            }
        }
        lines
    };
    let global = |value: fn(&Dynamics) -> f32| -> Vec<(f64, f64)> {
        series.iter().map(|d| (d.step as f64, value(d) as f64)).collect()
    };
    let mut norm = vec![("global norm".to_string(), global(|d| d.grad_norm))];
    let clip = global(|d| d.grad_clip);
    if clip.iter().any(|p| p.1 > 0.0) {
        norm.push(("clip".to_string(), clip));
    }
    let panels = area.split_evenly((2, 2));
    small_chart(&panels[0], "gradient norm per layer", &per_layer(|l| l.grad_norm), true, labels)?;
    small_chart(&panels[1], "update / weight ratio per layer", &per_layer(|l| l.update_ratio), true, labels)?;
    small_chart(&panels[2], "gradient norm before clipping", &norm, false, labels)?;
    small_chart(&panels[3], "learning rate", &[("lr".to_string(), global(|d| d.lr))], false, labels)?;
    Ok(())
}

/// One of the panel's charts: `lines` over steps, the y axis logarithmic where `log` (points
/// at or below 0 left out there). The second of two lines is drawn dashed (the clip threshold).
fn small_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    lines: &[Line],
    log: bool,
    labels: bool,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let points = || lines.iter().flat_map(|l| l.1.iter()).filter(|p| !log || p.1 > 0.0);
    let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (lo, hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if !lo.is_finite() {
        return Ok(()); // nothing to show
    }
    let x = x0..x1.max(x0 + 1.0);
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if labels {
        builder.caption(title, ("sans-serif", 16)).x_label_area_size(28).y_label_area_size(56);
    }
    let color = |i: usize| Palette99::pick(i).to_rgba();
    if log {
        let mut chart = builder.build_cartesian_2d(x, (lo / 1.5..hi * 1.5).log_scale())?;
        let mut mesh = chart.configure_mesh();
        if !labels {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.y_label_formatter(&|y| format!("{y:.0e}")).draw()?;
        for (i, (name, pts)) in lines.iter().enumerate() {
            let pts = pts.iter().copied().filter(|p| p.1 > 0.0);
            let s = chart.draw_series(LineSeries::new(pts, color(i)))?;
            if labels {
                s.label(name).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color(i)));
            }
        }
        if labels {
            legend(&mut chart)?;
        }
    } else {
        let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-12);
        let mut chart = builder.build_cartesian_2d(x, (lo - pad).max(0.0)..hi + pad)?;
        let mut mesh = chart.configure_mesh();
        if !labels {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.y_label_formatter(&|y| if y.abs() >= 0.01 { format!("{y:.2}") } else { format!("{y:.1e}") }).draw()?;
        for (i, (name, pts)) in lines.iter().enumerate() {
            let s = if i == 1 {
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 6, 4, color(i).into()))?
            } else {
                chart.draw_series(LineSeries::new(pts.iter().copied(), color(i)))?
            };
            if labels {
                s.label(name).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color(i)));
            }
        }
        if labels && lines.len() > 1 {
            legend(&mut chart)?;
        }
    }
    Ok(())
}

/// A small chart's legend, small and in its upper right corner.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 11))
        .background_style(WHITE.mix(0.7))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpt::dynamics::TensorDynamics;

    /// Steps 10..=50 of a made-up run: two blocks whose gradients shrink, lr decaying.
    fn series() -> Vec<Dynamics> {
        (1..=5u64)
            .map(|i| {
                let tensor = |name: &str, g: f32| TensorDynamics {
                    name: format!("transformer.{name}"),
                    count: 100,
                    grad_norm: g,
                    grad_rms: g / 10.0,
                    weight_rms: 0.02,
                    update_rms: 2e-5 * g,
                    update_ratio: 1e-3 * g,
                };
                Dynamics {
                    step: 10 * i,
                    lr: 1e-3 / i as f32,
                    grad_norm: 2.0 / i as f32,
                    grad_clip: 1.0,
                    tensors: vec![
                        tensor("wte.weight", 1.0 / i as f32),
                        tensor("h.0.attn.c_attn.weight", 0.5 / i as f32),
                        tensor("h.1.attn.c_attn.weight", 0.2 / i as f32),
                        tensor("ln_f.weight", 0.1 / i as f32),
                    ],
                }
            })
            .collect()
    }

    /// Every quarter of the panel has something drawn on it.
    #[test]
    fn dynamics_panel_draws_four_charts() {
        let (w, h) = (600u32, 400u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let area = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_dynamics(&area, &series().iter().collect::<Vec<_>>(), font_loaded()).unwrap();
            area.present().unwrap();
        }
        for (qx, qy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let inked = (qy * h / 2..(qy + 1) * h / 2)
                .flat_map(|y| (qx * w / 2..(qx + 1) * w / 2).map(move |x| (y * w + x) as usize * 3))
                .filter(|&i| buf[i..i + 3] != [255, 255, 255])
                .count();
            assert!(inked > 500, "quarter ({qx}, {qy}) is nearly blank: {inked} pixels drawn");
        }
    }

    /// Progress records with dynamics make loss.png taller by the panel.
    #[test]
    fn loss_png_gets_the_panel() {
        let dir = std::env::temp_dir().join(format!("wgpt-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("loss.png");
        let progress = |d: Option<Dynamics>, iter: u64| Record::Progress {
            iter,
            loss: 3.0 / iter as f32,
            lr: 1e-3,
            tokens_per_sec: 10.0,
            ms_per_step: 5.0,
            dynamics: d,
        };
        let mut metrics = Metrics::default();
        series().into_iter().for_each(|d| metrics.push(progress(Some(d.clone()), d.step)));
        try_draw(&metrics, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap()); // the PNG's IHDR
        assert_eq!(height, 540 + DYNAMICS_HEIGHT);
        let mut metrics = Metrics::default();
        metrics.push(progress(None, 1));
        try_draw(&metrics, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 540, "no dynamics, no panel");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
