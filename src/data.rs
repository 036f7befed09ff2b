//! Data: corpus text → token ids → 90/10 train/val split → seeded random (B, T+1) windows, as
//! nanoGPT's prepare.py and get_batch. The built-in synthetic tasks, which need no files, are in
//! [`tasks`].

pub mod tasks;

pub use tasks::{Task, TaskSpec, TASKS};

use crate::kernels::IGNORE;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The largest corpus wgpt reads: the text and its token ids are held in memory (the page's
/// wasm has 4 GiB in all), so bigger files are refused up front rather than half-loaded.
pub const MAX_CORPUS_BYTES: u64 = 128 << 20;

/// Refuses a corpus of more than [`MAX_CORPUS_BYTES`], saying the limit and what to do.
pub fn check_corpus_size(what: &str, bytes: u64) -> Result<()> {
    if bytes > MAX_CORPUS_BYTES {
        return Err(Error::Input(format!(
            "{what} is {:.1} MiB; wgpt holds a corpus in memory and takes at most {} MiB: train on a part of \
             it (e.g. `head -c 100M {what} > part.txt`)",
            bytes as f64 / (1 << 20) as f64,
            MAX_CORPUS_BYTES >> 20
        )));
    }
    Ok(())
}

/// Checks that corpus bytes are usable text: UTF-8, not binary, not empty. `what` names the
/// source (a file name) in the error.
pub fn corpus_text(what: &str, bytes: &[u8]) -> Result<String> {
    check_corpus_size(what, bytes.len() as u64)?;
    if bytes.is_empty() {
        return Err(Error::Input(format!("{what} is empty; give a text file with some content")));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::Input(format!(
            "{what} is not UTF-8 text (invalid byte at offset {}); give a plain-text corpus (.txt, UTF-8)",
            e.valid_up_to()
        ))
    })?;
    let control = text.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')).count();
    if control * 100 > text.chars().count() {
        return Err(Error::Input(format!(
            "{what} looks binary ({control} control characters); give a plain-text corpus"
        )));
    }
    Ok(text.to_string())
}

/// Which part of the corpus a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

/// Token ids split 90/10 into train and val; for an answer-only loss, which targets count.
pub struct Dataset {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    /// Answer-only loss (tasks): the counted tokens and line starts of (train, val); None: every
    /// target counts and windows start anywhere.
    pub answers: Option<(Answers, Answers)>,
}

/// Which tokens of a split are answer tokens (counted in the loss) and where its lines start:
/// windows start at a line, so no answer is cut from its prompt.
pub struct Answers {
    pub counted: Vec<bool>,
    pub starts: Vec<usize>,
}

impl Answers {
    /// `counted` with the line starts of `starts` that leave a full window of `t + 1` tokens.
    fn new(counted: Vec<bool>, starts: impl Iterator<Item = usize>, t: usize) -> Answers {
        let starts = starts.filter(|s| s + t < counted.len()).collect();
        Answers { counted, starts }
    }
}

impl Dataset {
    /// Checks that `len` tokens can be split with a context of `t` (see [`Dataset::new`]).
    pub fn check_len(len: usize, t: usize) -> Result<()> {
        let need = 10 * (t + 1);
        if len < need {
            return Err(Error::Input(format!(
                "the corpus has {len} tokens; with a context of {t} it needs at least {need} (10 x (T+1), so that the \
                 10% validation split holds a full window): give more text or a smaller block size"
            )));
        }
        Ok(())
    }

    /// Splits `tokens` 90/10; both parts must hold at least one window of `t + 1` tokens.
    pub fn new(tokens: Vec<u32>, t: usize) -> Result<Dataset> {
        Dataset::check_len(tokens.len(), t)?;
        let n = tokens.len() * 9 / 10;
        let val = tokens[n..].to_vec();
        let mut train = tokens;
        train.truncate(n);
        Ok(Dataset { train, val, answers: None })
    }

    /// A task's examples for an answer-only loss: each tokenized as prompt, then answer + "\n"
    /// (the targets counted), split 90/10 at a line start; windows start at lines.
    pub fn from_examples(examples: &[(String, String)], tokenizer: &Tokenizer, t: usize) -> Result<Dataset> {
        let (mut tokens, mut counted, mut starts) = (vec![], vec![], vec![]);
        for (prompt, answer) in examples {
            starts.push(tokens.len());
            let (p, a) = (tokenizer.encode(prompt)?, tokenizer.encode(&format!("{answer}\n"))?);
            counted.extend(std::iter::repeat_n(false, p.len()).chain(std::iter::repeat_n(true, a.len())));
            tokens.extend(p.into_iter().chain(a));
        }
        Dataset::check_len(tokens.len(), t)?;
        let n = starts.iter().copied().find(|&s| s >= tokens.len() * 9 / 10).unwrap_or(tokens.len());
        let (val, val_counted) = (tokens.split_off(n), counted.split_off(n));
        let split = starts.iter().position(|&s| s >= n).unwrap_or(starts.len());
        let val_starts: Vec<usize> = starts.split_off(split).into_iter().map(|s| s - n).collect();
        let answers =
            (Answers::new(counted, starts.into_iter(), t), Answers::new(val_counted, val_starts.into_iter(), t));
        if answers.0.starts.is_empty() || answers.1.starts.is_empty() {
            return Err(Error::Input(format!(
                "the task's lines are too long for a context of {t}: no window of T+1 tokens starts at a line in both \
                 splits; give a larger block size"
            )));
        }
        Ok(Dataset { train: tokens, val, answers: Some(answers) })
    }

    /// Tokenizes `text` and splits it.
    pub fn from_text(text: &str, tokenizer: &Tokenizer, t: usize) -> Result<Dataset> {
        Dataset::new(tokenizer.encode(text)?, t)
    }

    /// B random windows of T+1 tokens from `split`: inputs x and next-token targets y, each B·T.
    /// With an answer-only loss the windows start at lines and the targets that are not answer
    /// tokens are IGNORE (not counted in the loss).
    pub fn batch(&self, split: Split, rng: &mut Rng, b: usize, t: usize) -> (Vec<u32>, Vec<u32>) {
        let data = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        let answers = self.answers.as_ref().map(|(train, val)| if split == Split::Train { train } else { val });
        let mut x = Vec::with_capacity(b * t);
        let mut y = Vec::with_capacity(b * t);
        for _ in 0..b {
            let i = match answers {
                Some(a) => a.starts[rng.below(a.starts.len())],
                None => rng.below(data.len() - t),
            };
            x.extend_from_slice(&data[i..i + t]);
            match answers {
                Some(a) => y.extend((i + 1..i + t + 1).map(|k| if a.counted[k] { data[k] } else { IGNORE })),
                None => y.extend_from_slice(&data[i + 1..i + t + 1]),
            }
        }
        (x, y)
    }
}
