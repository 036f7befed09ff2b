//! `wgpt inspect`: a model directory's parameter table (every HF name, shape, count and what it
//! is for, block by block, and the total), and with a prompt its tokens and the logit lens; as
//! text or as one JSON object for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use wgpt::hf::peft::dir::Source;
use wgpt::lens::{check_prompt, Lens, LogitLens};
use wgpt::model::Gpt2Config;
use wgpt::options::Options;
use wgpt::params::{param_table, total, ParamRow};
use wgpt::tokenizer::Tokenizer;
use wgpt::{hf, Error, Result};

#[derive(clap::Args)]
pub struct InspectArgs {
    /// HF model directory: config.json (the table needs only this), model.safetensors and
    /// tokenizer.json (for --prompt); or a peft LoRA adapter directory, run on its base.
    #[arg(long)]
    model: PathBuf,
    /// The base model directory of an adapter --model (default: the adapter's
    /// base_model_name_or_path, when that is a local directory).
    #[arg(long)]
    base: Option<PathBuf>,
    /// Look through the model at this text: its tokens and, per layer, the most likely next
    /// tokens (the logit lens). At most the model's context (block_size tokens); empty means
    /// <|endoftext|> where the tokenizer has it.
    #[arg(long)]
    prompt: Option<String>,
    /// How many of each layer's most likely next tokens to show.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    top: u16,
    /// Print one JSON object instead: {"params": [{name, shape, count, about, tied_to}],
    /// "total_params", "tokens": [{id, text}], "logit_lens": [{layer, top: [{id, text, p}]}]}
    /// (tokens and logit_lens empty without --prompt).
    #[arg(long)]
    json: bool,
}

/// A prompt's tokens and its lens, with each token's text.
struct Looked {
    tokens: Vec<(u32, String)>,
    lens: LogitLens,
    /// The text of every id the lens shows.
    text: std::collections::HashMap<u32, String>,
}

pub fn inspect(args: InspectArgs, opts: &Options) -> Result<ExitCode> {
    let source = hf::peft::dir::Source::resolve(&args.model, args.base.as_deref())?;
    let cfg = source.config()?;
    let rows = param_table(&cfg);
    let looked = match &args.prompt {
        Some(prompt) => Some(look(&args, &source, opts, &cfg, prompt)?),
        None => None,
    };
    if args.json {
        println!("{}", to_json(&rows, looked.as_ref())?);
    } else {
        print_table(&args, &cfg, &rows);
        if let Some(l) = &looked {
            print_lens(&cfg, l);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Tokenizes the prompt, checks it fits, and runs the lens on the GPU.
fn look(args: &InspectArgs, source: &Source, opts: &Options, cfg: &Gpt2Config, prompt: &str) -> Result<Looked> {
    let Some(tok_path) = source.file("tokenizer.json") else {
        return Err(Error::Input(format!(
            "{} has no tokenizer.json, which --prompt needs to turn the text into tokens",
            args.model.display()
        )));
    };
    let tokenizer = Tokenizer::from_file(&tok_path)?;
    let ids = tokenizer.prompt_ids(prompt)?;
    if !prompt.is_empty() && tokenizer.decode(&ids)? != prompt {
        eprintln!("note: characters of the prompt that are not in the vocabulary were dropped");
    }
    check_prompt(cfg, &ids)?;
    let (model, _) = super::model(opts, source)?;
    let lens = pollster::block_on(Lens::default().run(&model, &ids, args.top as usize))?;
    let mut text = std::collections::HashMap::new();
    let shown = lens.layers.iter().flat_map(|l| l.top.iter().map(|t| t.0).chain(l.cells.iter().map(|c| c.0)));
    for id in ids.iter().copied().chain(shown) {
        if let std::collections::hash_map::Entry::Vacant(e) = text.entry(id) {
            e.insert(tokenizer.decode(&[id])?);
        }
    }
    let tokens = ids.iter().map(|&id| (id, text[&id].clone())).collect();
    Ok(Looked { tokens, lens, text })
}

/// What `--json` prints, field for field the object issue 15 specifies.
#[derive(Serialize)]
struct JsonOut<'a> {
    params: &'a [ParamRow],
    total_params: usize,
    tokens: Vec<JsonToken<'a>>,
    logit_lens: Vec<JsonLayer<'a>>,
}

#[derive(Serialize)]
struct JsonToken<'a> {
    id: u32,
    text: &'a str,
}

#[derive(Serialize)]
struct JsonLayer<'a> {
    layer: usize,
    top: Vec<JsonTop<'a>>,
}

#[derive(Serialize)]
struct JsonTop<'a> {
    id: u32,
    text: &'a str,
    p: f32,
}

fn to_json(rows: &[ParamRow], looked: Option<&Looked>) -> Result<String> {
    let mut out = JsonOut { params: rows, total_params: total(rows), tokens: vec![], logit_lens: vec![] };
    if let Some(l) = looked {
        out.tokens = l.tokens.iter().map(|(id, text)| JsonToken { id: *id, text }).collect();
        out.logit_lens = l
            .lens
            .layers
            .iter()
            .map(|layer| JsonLayer {
                layer: layer.layer,
                top: layer.top.iter().map(|&(id, p)| JsonTop { id, text: &l.text[&id], p }).collect(),
            })
            .collect();
    }
    serde_json::to_string(&out).map_err(|e| Error::Format(format!("cannot write the JSON: {e}")))
}

/// `1234567` as `1,234,567`.
fn grouped(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn print_table(args: &InspectArgs, c: &Gpt2Config, rows: &[ParamRow]) {
    println!(
        "{}: {} layers, {} heads, {} dims, context {}, vocabulary {}",
        args.model.display(),
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        c.vocab_size
    );
    // names start 2 or (in a block) 4 columns in
    let width = 4 + rows.iter().map(|r| r.name.len()).max().unwrap_or(0) + 2;
    let line = |name: String, shape: String, count: String, about: &str| {
        println!("{name:<width$}{shape:<16}{count:>12}  {about}");
    };
    line("  name".into(), "shape".into(), "parameters".into(), "about");
    let mut block = None;
    for r in rows {
        if r.block() != block {
            block = r.block();
            if let Some(b) = block {
                let n: usize = rows.iter().filter(|x| x.block() == Some(b)).map(|x| x.count).sum();
                line(format!("  h.{b}"), String::new(), grouped(n), &format!("transformer block {b} of {}", c.n_layer));
            }
        }
        let indent = if block.is_some() { "    " } else { "  " };
        let about = match &r.tied_to {
            Some(to) => format!("tied to {to}: {}", r.about),
            None => r.about.clone(),
        };
        line(format!("{indent}{}", r.name), format!("{:?}", r.shape), grouped(r.count), &about);
    }
    line("  total".into(), String::new(), grouped(total(rows)), "transformers' num_parameters()");
}

/// A probability with four significant digits.
fn prob(p: f32) -> String {
    if p >= 1e-3 {
        format!("{p:.4}")
    } else {
        format!("{p:.3e}")
    }
}

/// Positions per row of the top-1 grid.
const GRID_COLUMNS: usize = 8;

fn print_lens(c: &Gpt2Config, l: &Looked) {
    let show = |id: u32| format!("{:?}", l.text[&id]);
    println!("\nprompt: {} tokens", l.tokens.len());
    for (i, (id, _)) in l.tokens.iter().enumerate() {
        println!("  {i:>4}  {id:>6}  {}", show(*id));
    }
    let name = |layer: usize| match layer {
        0 => "embeddings".to_string(),
        n if n == c.n_layer => format!("after h.{}, output", n - 1),
        n => format!("after h.{}", n - 1),
    };
    println!("\nlogit lens: the most likely next tokens after the last token, had the model stopped after each layer");
    for layer in &l.lens.layers {
        let top: Vec<String> = layer.top.iter().map(|&(id, p)| format!("{} {}", show(id), prob(p))).collect();
        println!("  layer {:>2} ({:<18}) {}", layer.layer, name(layer.layer), top.join("  "));
    }
    println!("\nlogit lens: the most likely next token at each position (rows: layers)");
    let cell = |s: String| s.chars().take(12).collect::<String>();
    for start in (0..l.tokens.len()).step_by(GRID_COLUMNS) {
        let end = (start + GRID_COLUMNS).min(l.tokens.len());
        let heads: Vec<String> = (start..end).map(|i| format!("{:<13}", cell(show(l.tokens[i].0)))).collect();
        println!("  {:<10}{}", "token", heads.join("").trim_end());
        for layer in &l.lens.layers {
            let cells: Vec<String> =
                layer.cells[start..end].iter().map(|&(id, _)| format!("{:<13}", cell(show(id)))).collect();
            println!("  layer {:<4}{}", layer.layer, cells.join("").trim_end());
        }
    }
}
