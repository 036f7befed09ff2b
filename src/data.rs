//! Data: corpus text → token ids → 90/10 train/val split → seeded random (B, T+1) windows, as
//! nanoGPT's prepare.py and get_batch. The built-in synthetic tasks, which need no files, are in
//! [`tasks`].

pub mod tasks;

pub use tasks::{Task, TASKS};

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

/// Token ids split 90/10 into train and val.
pub struct Dataset {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
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
        Ok(Dataset { train, val })
    }

    /// Tokenizes `text` and splits it.
    pub fn from_text(text: &str, tokenizer: &Tokenizer, t: usize) -> Result<Dataset> {
        Dataset::new(tokenizer.encode(text)?, t)
    }

    /// B random windows of T+1 tokens from `split`: inputs x and next-token targets y, each B·T.
    pub fn batch(&self, split: Split, rng: &mut Rng, b: usize, t: usize) -> (Vec<u32>, Vec<u32>) {
        let data = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        let mut x = Vec::with_capacity(b * t);
        let mut y = Vec::with_capacity(b * t);
        for _ in 0..b {
            let i = rng.below(data.len() - t);
            x.extend_from_slice(&data[i..i + t]);
            y.extend_from_slice(&data[i + 1..i + t + 1]);
        }
        (x, y)
    }
}
