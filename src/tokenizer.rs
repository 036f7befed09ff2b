//! Tokenizers through the `tokenizers` crate behind one small type: load a tokenizer.json (GPT-2's
//! byte-level BPE, or the ones wgpt trains), build a character-level one (nanoGPT's
//! shakespeare-char vocabulary) or train a byte-level BPE on a corpus; encode, decode, save.

use std::collections::{BTreeSet, HashSet};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::{BpeTrainerBuilder, Vocab, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use crate::{Error, Result};

/// GPT-2's end-of-text token, added to the BPE tokenizers wgpt trains.
pub const END_OF_TEXT: &str = "<|endoftext|>";

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Parses tokenizer.json bytes.
    pub fn from_bytes(what: &str, bytes: &[u8]) -> Result<Tokenizer> {
        // tokenizers panics (an `expect`) on some malformed files, and a panic in the page's
        // worker ends the engine: the JSON and the parts that can panic are checked first
        let bad = |why: String| Error::Format(format!("{what} is not a valid tokenizer.json: {why}"));
        let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if let Some(kind) = unsupported_part(&json) {
            return Err(bad(format!(
                "it uses a {kind} component (SentencePiece-style); wgpt reads GPT-2-family (byte-level BPE) tokenizers"
            )));
        }
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
        Ok(Tokenizer { inner })
    }

    /// One token per distinct character of `text`, ids in code-point order (nanoGPT's
    /// `chars = sorted(list(set(data)))`: 65 tokens on tiny Shakespeare). Characters not in the
    /// vocabulary are dropped when encoding.
    pub fn char_level(text: &str) -> Result<Tokenizer> {
        let chars: BTreeSet<char> = text.chars().collect();
        if chars.is_empty() {
            return Err(Error::Input("the corpus is empty: a character vocabulary needs some text".into()));
        }
        let vocab: Vocab = chars.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .build()
            .map_err(|e| Error::Format(format!("cannot build the character vocabulary: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_decoder(Some(Fuse::new()));
        Ok(Tokenizer { inner })
    }

    /// A tokenizer built on `text` from a spec: `char` (one token per character) or `bpe:N` (a
    /// byte-level BPE of N tokens).
    pub fn from_spec(spec: &str, text: &str) -> Result<Tokenizer> {
        if spec == "char" {
            return Tokenizer::char_level(text);
        }
        let n = spec
            .strip_prefix("bpe:")
            .ok_or_else(|| Error::Input(format!("unknown tokenizer {spec:?}: use char or bpe:N (e.g. bpe:512)")))?;
        let n = n.parse().map_err(|_| Error::Input(format!("tokenizer bpe:N needs a number, got {spec:?}")))?;
        Tokenizer::train_bpe(text, n)
    }

    /// A byte-level BPE (GPT-2's scheme) with `vocab_size` tokens trained on `text`, plus
    /// `<|endoftext|>`.
    pub fn train_bpe(text: &str, vocab_size: usize) -> Result<Tokenizer> {
        let alphabet = ByteLevel::alphabet();
        if vocab_size < alphabet.len() + 1 {
            return Err(Error::Input(format!(
                "a byte-level BPE needs a vocabulary of at least {} (256 bytes + <|endoftext|>), got {vocab_size}",
                alphabet.len() + 1
            )));
        }
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(alphabet.into_iter().collect::<HashSet<char>>())
            .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
            .build()
            .into();
        let mut inner = tokenizers::Tokenizer::new(BPE::default());
        inner.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        inner
            .train(&mut trainer, text.lines().map(|l| format!("{l}\n")))
            .map_err(|e| Error::Input(format!("cannot train a BPE tokenizer on the corpus: {e}")))?;
        Ok(Tokenizer { inner })
    }

    /// The id of `<|endoftext|>`, where the vocabulary has it.
    pub fn end_of_text(&self) -> Option<u32> {
        self.inner.token_to_id(END_OF_TEXT)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Tokenizer> {
        Tokenizer::from_bytes(&path.display().to_string(), &crate::read_file(path)?)
    }

    /// Token ids of `text` (no special tokens added: corpora and task answers).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Input(format!("cannot tokenize the text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of a prompt as transformers' `tokenizer(prompt)` gives them: the tokenizer's
    /// post-processor adds its special tokens (a Llama-family BOS; GPT-2's and Qwen3's add none).
    /// An empty prompt without them starts from `<|endoftext|>` (unconditional generation) where
    /// the vocabulary has it; a prompt none of whose characters are in the vocabulary (a
    /// character-level tokenizer drops unknown ones) is an error, as is an empty prompt without
    /// `<|endoftext|>`.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let enc =
            self.inner.encode(prompt, true).map_err(|e| Error::Input(format!("cannot tokenize the prompt: {e}")))?;
        let ids = enc.get_ids().to_vec();
        if !ids.is_empty() {
            return Ok(ids);
        }
        if !prompt.is_empty() {
            return Err(Error::Input(format!(
                "none of the prompt's characters are in this model's vocabulary (a character-level tokenizer drops \
                 unknown characters); use characters of the text the model was trained on{}",
                self.alphabet().map_or(String::new(), |a| format!(" (it knows {a})"))
            )));
        }
        self.end_of_text().map(|id| vec![id]).ok_or_else(|| {
            Error::Input(
                "the prompt is empty and this tokenizer has no <|endoftext|> to start from; give a prompt".into(),
            )
        })
    }

    /// A character-level vocabulary's characters, escaped, in id order (`\n+0123456789=`); None
    /// for other vocabularies.
    fn alphabet(&self) -> Option<String> {
        let vocab = self.inner.get_vocab(true);
        if vocab.len() > 256 || vocab.keys().any(|t| t.chars().count() != 1) {
            return None;
        }
        let mut chars: Vec<(u32, &String)> = vocab.iter().map(|(t, &id)| (id, t)).collect();
        chars.sort_unstable();
        Some(chars.iter().flat_map(|(_, t)| t.escape_debug()).collect())
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Input(format!("cannot decode token ids: {e}")))
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The tokenizer.json text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| Error::Format(format!("cannot serialize the tokenizer: {e}")))
    }
}

/// The first component type that tokenizers can panic on while loading (a Precompiled
/// normalizer's charsmap is parsed with `expect`), anywhere in the tokenizer.json.
fn unsupported_part(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(kind)) = map.get("type") {
                if kind == "Precompiled" {
                    return Some(kind.clone());
                }
            }
            map.values().find_map(unsupported_part)
        }
        serde_json::Value::Array(items) => items.iter().find_map(unsupported_part),
        _ => None,
    }
}
