//! Text tokenisation with the model's own `tokenizer.json` (the Hugging Face
//! `tokenizers` crate, so ids equal the Python library's), truncated to the
//! context length with the end-of-text token kept last.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{ModelError, Result};

/// CLIP's end-of-text token, which also pads.
const CLIP_END_OF_TEXT: &str = "<|endoftext|>";

/// A model's tokenizer. `Send + Sync`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    context_length: usize,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating to `context_length` ids.
    pub fn load(path: &Path, context_length: usize) -> Result<TextTokenizer> {
        let tokenizer_err = |source| ModelError::Tokenizer {
            path: path.to_path_buf(),
            source,
        };
        let mut inner = Tokenizer::from_file(path).map_err(tokenizer_err)?;
        // The post-processor adds the start and end tokens; truncation counts
        // them, so a long text keeps its end-of-text token.
        inner
            .with_truncation(Some(TruncationParams {
                max_length: context_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(tokenizer_err)?;
        inner.with_padding(None);
        let pad_id = inner
            .token_to_id(CLIP_END_OF_TEXT)
            .or_else(|| inner.get_padding().map(|p| p.pad_id))
            .unwrap_or(0);
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
            context_length,
            pad_id,
        })
    }

    /// The token ids of each text, start and end tokens included.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|source| ModelError::Tokenizer {
                path: self.path.clone(),
                source,
            })?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// The maximum number of ids per text.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The id that pads shorter texts in a batch.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}
