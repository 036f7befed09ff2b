//! `wgpt sample`: text from a model directory with the KV-cache decoder, streamed to stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use wgpt::generate::{check_decoder_memory, decode_context, Decoder, SampleConfig, TextStream};
use wgpt::options::Options;
use wgpt::precision::Purpose;
use wgpt::{hf, Error, Result};

#[derive(clap::Args)]
pub struct SampleArgs {
    /// HF model directory: config.json, model.safetensors and tokenizer.json (a `wgpt train`
    /// checkpoint, or openai-community/gpt2 as downloaded from the Hugging Face hub); or a peft
    /// LoRA adapter directory, run on its base.
    #[arg(long)]
    model: PathBuf,
    /// The base model directory of an adapter --model (default: the adapter's
    /// base_model_name_or_path, when that is a local directory).
    #[arg(long)]
    base: Option<PathBuf>,
    /// The prompt; `-` reads it from stdin. Empty: generation starts from <|endoftext|> when the
    /// tokenizer has it (unconditional samples), else it is an error. Tokenized as transformers'
    /// `tokenizer(prompt)` (a Llama-family tokenizer adds its BOS). Longer than the context
    /// (--context tokens): only its last tokens are used (said on stderr).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Tokens to generate (fewer if the model emits <|endoftext|>). Past the context the window
    /// slides: the model always sees the last --context tokens.
    #[arg(long, default_value_t = 200)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 or less means greedy (always the most likely token).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample only among the k most likely tokens; 0 = no limit, 1 = greedy.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling: only among the smallest set of most likely tokens whose probability
    /// reaches p; must be in (0, 1], 1 = off.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed of the sampling RNG: the same seed, prompt and settings give the same text.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// The tokens the KV cache holds (the context the model sees): at most the model's
    /// block_size (max_position_embeddings); default block_size, at most 2048.
    #[arg(long)]
    context: Option<usize>,
}

pub fn sample(args: SampleArgs, opts: &Options) -> Result<ExitCode> {
    let cfg = SampleConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    cfg.validate()?;
    let prompt = read_prompt(args.prompt)?;
    let source = hf::peft::dir::Source::resolve(&args.model, args.base.as_deref())?;
    // the context and the memory it needs are checked before the weights are read
    let config = source.config()?;
    let block = decode_context(&config, args.context)?;
    check_decoder_memory(&config, block, false, opts.device.memory)?;
    let (model, tokenizer) = super::model(opts, &source)?;
    let tokenizer = tokenizer.ok_or_else(|| {
        Error::Input(format!("{} has no tokenizer.json; sampling text needs one", args.model.display()))
    })?;
    let eot = tokenizer.end_of_text();
    // generation_config.json's eos tokens end the text too (not shown, as transformers)
    let stops = source.stop_tokens()?;
    let ids = tokenizer.prompt_ids(&prompt)?;
    if !prompt.is_empty() && tokenizer.decode(&tokenizer.encode(&prompt)?)? != prompt {
        eprintln!("note: characters of the prompt that are not in the vocabulary were dropped");
    }
    if ids.len() > block {
        eprintln!(
            "note: the prompt has {} tokens but the context is {block} (--context); using its last {block} tokens",
            ids.len()
        );
    }
    let precision = super::precision(opts, &model.kernels, Purpose::Inference);
    let mut decoder = Decoder::with_context(&model, precision, Some(block))?;
    print!("{prompt}");
    let mut stream = TextStream::new(&tokenizer, &ids)?;
    let show = |text: String| {
        print!("{text}");
        let _ = std::io::stdout().flush();
    };
    let start = Instant::now();
    let mut first = None;
    let mut error = None;
    let out = pollster::block_on(decoder.generate(&model, &ids, &cfg, eot, |id| {
        first.get_or_insert_with(|| start.elapsed());
        if stops.contains(&id) {
            return false;
        }
        match stream.push(&tokenizer, id) {
            Ok(text) => {
                show(text);
                true
            }
            Err(e) => {
                error = Some(e);
                false
            }
        }
    }))?;
    if let Some(e) = error {
        return Err(e);
    }
    show(stream.finish(&tokenizer)?);
    println!();
    report(out.len(), start, first, ids.len().min(block));
    Ok(ExitCode::SUCCESS)
}

/// The prompt: the flag's text, or stdin's where it is "-".
fn read_prompt(arg: String) -> Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::Input(format!("cannot read the prompt from stdin (it must be UTF-8 text): {e}")))?;
    Ok(s)
}

/// Prints how fast `n` tokens came after `start`, the first after `first`, from a prompt of
/// `prompt` tokens.
fn report(n: usize, start: Instant, first: Option<std::time::Duration>, prompt: usize) {
    let total = start.elapsed().as_secs_f64();
    let first = first.map_or(total, |d| d.as_secs_f64());
    let rest = if n > 1 {
        format!(", then {:.1} tokens/s", (n - 1) as f64 / (total - first).max(1e-9))
    } else {
        String::new()
    };
    eprintln!(
        "{n} tokens in {total:.2} s ({:.1} tokens/s): first token after {:.0} ms (prompt of {prompt} tokens){rest}",
        n as f64 / total.max(1e-9),
        first * 1e3,
    );
}
