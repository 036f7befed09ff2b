//! Tokenizers through the `tokenizers` crate behind one small type: load a tokenizer.json (GPT-2's
//! byte-level BPE, or the ones wgpt trains), encode, decode, save.

use crate::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Parses tokenizer.json bytes.
    pub fn from_bytes(what: &str, bytes: &[u8]) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Format(format!("{what} is not a valid tokenizer.json: {e}")))?;
        Ok(Tokenizer { inner })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Tokenizer> {
        Tokenizer::from_bytes(&path.display().to_string(), &crate::read_file(path)?)
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Input(format!("cannot tokenize the text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Input(format!("cannot decode token ids: {e}")))
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The tokenizer.json text.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| Error::Format(format!("cannot serialize the tokenizer: {e}")))
    }
}
