//! `wgpt experiments` (the gallery of src/run/experiments.rs, a line each) and `wgpt train
//! --experiment NAME`: an entry's runs trained one after the other into --out/RUN, each a run
//! directory as `wgpt train` writes one, then their losses overlaid in --out/loss.png.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::prelude::*;
use wgpt::data::Task;
use wgpt::options::Options;
use wgpt::precision::Purpose;
use wgpt::run::builder::{Init, NewRun};
use wgpt::run::experiments::{Corpus, Experiment, ExperimentRun, EXPERIMENTS};
use wgpt::run::format::{History, Metrics, Record, METRICS_FILE};
use wgpt::run::settings::TASK_EXAMPLES;
use wgpt::run::{DataSource, RunConfig};
use wgpt::{read_file, Error, Result};

use super::train::{launch, read_corpus, tokenizer_for, train_loop, TrainArgs};

/// Where the Tiny Shakespeare entries' corpus comes from (the page downloads it; the CLI reads
/// it from --data).
const SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

/// `wgpt experiments`: a line per entry, its name first.
pub fn list() -> Result<ExitCode> {
    for e in EXPERIMENTS {
        let runs: Vec<&str> = e.runs.iter().map(|r| r.0).collect();
        let corpus = match e.corpus {
            Corpus::Builtin(name) => format!("{name} (--data FILE)"),
            Corpus::Task(spec) => format!("the {spec} task"),
        };
        println!("{:<15} {}: runs {} on {corpus}", e.name, e.title, runs.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// One run of the entry, checked and ready to build: its settings made into a run on its text.
struct Planned {
    label: &'static str,
    new: NewRun,
}

/// `wgpt train --experiment NAME`: every run is checked before the first one trains.
pub fn run(a: &TrainArgs, name: &str, opts: &Options) -> Result<ExitCode> {
    let e = Experiment::find(name)?;
    if a.arch.given() {
        return Err(Error::Input(format!(
            "the architecture flags (--arch, --positions, ...) do not go with --experiment: {name}'s runs set their own"
        )));
    }
    let mut runs = e.runs()?;
    if let Some(steps) = a.steps {
        if steps == 0 {
            return Err(Error::Input("--steps must be at least 1".into()));
        }
        runs = runs.into_iter().map(|r| r.shortened(steps)).collect();
    }
    let (data, text) = corpus(e, a.data.as_deref(), &runs)?;
    let full = a.optimizer_state || !a.no_optimizer_state;
    let planned = runs.iter().map(|r| plan(e, r, (&data, &text), full)).collect::<Result<Vec<_>>>()?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("out"));
    let kernels = super::kernels(opts)?;
    let precision = super::precision(opts, &kernels, Purpose::Training);
    let mut dirs = vec![];
    for (i, Planned { label, mut new }) in planned.into_iter().enumerate() {
        eprintln!("experiment {}: run {} of {}, {label}", e.name, i + 1, runs.len());
        new.cfg.train.precision = precision;
        let mut driver = launch(kernels.clone(), new, &text)?;
        driver.run.set_submit_budget(opts.submit_budget_ms);
        let dir = out.join(label);
        train_loop(driver, &dir, None, Some(text.clone()), opts)?;
        dirs.push((label, dir));
    }
    let mut curves = vec![];
    for (label, dir) in &dirs {
        let path = dir.join(METRICS_FILE);
        let text = String::from_utf8_lossy(&read_file(&path)?).into_owned();
        let metrics = Metrics::parse(&path.display().to_string(), &text)?;
        println!("{}", summary(label, &metrics));
        curves.push((label.to_string(), metrics.history()));
    }
    let png = out.join("loss.png");
    if let Err(err) = overlay(&curves, &png) {
        eprintln!("note: could not draw {}: {err}", png.display());
    }
    println!(
        "experiment {}: {} runs in {}, their losses overlaid in {}",
        e.name,
        dirs.len(),
        out.display(),
        png.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The entry's data and text: its task's (generated from the runs' seed, which they share), or
/// the file --data names for a built-in corpus.
fn corpus(e: &Experiment, data: Option<&Path>, runs: &[ExperimentRun]) -> Result<(DataSource, String)> {
    match (e.corpus, data) {
        (Corpus::Task(spec), None) => {
            let seed = runs.first().map_or(0, |r| r.settings.seed);
            let task = Task::parse(spec)?;
            Ok((DataSource::Task(task.spec()), task.corpus(TASK_EXAMPLES, seed)))
        }
        (Corpus::Task(spec), Some(_)) => Err(Error::Input(format!(
            "{} trains on the {spec} task, which it generates itself: leave --data out",
            e.name
        ))),
        (Corpus::Builtin(_), Some(path)) => {
            let path = path.display().to_string();
            Ok((DataSource::File(path.clone()), read_corpus(&path)?))
        }
        (Corpus::Builtin(name), None) => Err(Error::Input(format!(
            "{} trains on {name}, which the CLI does not download: save {SHAKESPEARE_URL} and pass --data FILE",
            e.name
        ))),
    }
}

/// One run's tokenizer, model and settings on `data` (its text), checked, its checkpoints with
/// the optimizer state where `full`; an error names the run.
fn plan(e: &Experiment, r: &ExperimentRun, (data, text): (&DataSource, &str), full: bool) -> Result<Planned> {
    let named = |err: Error| Error::Input(format!("experiment {}, run {}: {err}", e.name, r.label));
    let s = &r.settings;
    let tokenizer = tokenizer_for(&s.tokenizer, text).map_err(named)?;
    let model = s.model(tokenizer.vocab_size()).map_err(named)?;
    let cfg: RunConfig = s.run_config(model, data.clone(), s.tokenizer.clone()).map_err(named)?;
    let weights = Init::Random(s.seed);
    Ok(Planned { label: r.label, new: NewRun { cfg, weights, tokenizer, optimizer_state: full } })
}

/// `label: val loss X at step N (accuracy Y%)`, from a run's last evaluation.
fn summary(label: &str, metrics: &Metrics) -> String {
    let last = metrics.records().iter().rev().find_map(|r| match r {
        Record::Eval(e) => Some(e),
        Record::Progress { .. } => None,
    });
    match last {
        Some(e) => {
            let acc = e.accuracy.map(|a| format!(", exact-match accuracy {:.0}%", a * 100.0)).unwrap_or_default();
            format!("{label}: val loss {:.4} at step {}{acc}", e.val_loss, e.iter)
        }
        None => format!("{label}: no evaluation"),
    }
}

/// The runs' losses on one chart: val thick, train thin, a colour per run, named in the legend.
fn overlay(curves: &[(String, History)], png: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let point = |&(step, loss): &(u64, f32)| (step as f64, loss as f64);
    let all = || curves.iter().flat_map(|(_, h)| h.train.iter().chain(&h.val)).map(point);
    let max_x = all().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    if !lo.is_finite() {
        return Err("no losses were logged".into());
    }
    let root = BitMapBackend::new(png, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let labels = super::chart::font_loaded();
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder.caption("wgpt experiment: val (thick), train (thin)", ("sans-serif", 22));
        builder.x_label_area_size(40).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0.0..max_x, (lo * 0.95)..(hi * 1.02))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("step").y_desc("loss");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for (i, (label, h)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart.draw_series(LineSeries::new(h.train.iter().map(point), color.mix(0.4)))?;
        let val = chart.draw_series(LineSeries::new(h.val.iter().map(point), color.stroke_width(3)))?;
        if labels {
            val.label(label.as_str()).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
    }
    if labels {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}
