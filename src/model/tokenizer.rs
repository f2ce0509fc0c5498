//! Text tokenisation with the model's own `tokenizer.json` (the Hugging Face
//! `tokenizers` crate, so ids equal the Python library's), truncated to the
//! context length with the end-of-text token kept last; for CLIP models,
//! after OpenAI CLIP's text cleaning (`clip_text.rs`), so ids equal those the
//! models were trained with.
//!
//! This module decides which models get the cleaning (the contract is
//! `schema/model.md`, "Text normalisation").

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::clip_text;
use super::folder::read_json;
use crate::error::{ModelError, Result};

/// CLIP's end-of-text token, which also pads.
const CLIP_END_OF_TEXT: &str = "<|endoftext|>";
/// CLIP's start-of-text token: a tokenizer without `tokenizer_config.json`
/// that has it is taken for CLIP's.
const CLIP_START_OF_TEXT: &str = "<|startoftext|>";
/// The `tokenizer_class` values of CLIP's BPE tokenizer.
const CLIP_TOKENIZER_CLASSES: [&str; 2] = ["CLIPTokenizer", "CLIPTokenizerFast"];

/// What is done to a text before the `tokenizer.json` pipeline sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextNormalization {
    /// OpenAI CLIP's cleaning, as its `SimpleTokenizer` does it:
    /// `ftfy.fix_text`, `html.unescape` twice, white-space runs to one space,
    /// strip, lower case. For models whose `tokenizer_config.json` names a
    /// CLIP tokenizer class.
    Clip,
    /// Nothing beyond the normaliser of `tokenizer.json` itself.
    TokenizerOnly,
}

impl TextNormalization {
    /// The normalisation for the tokenizer at `path` (see `schema/model.md`):
    /// [`Clip`](Self::Clip) when the `tokenizer_config.json` beside it names
    /// `CLIPTokenizer` or `CLIPTokenizerFast`, or, without a
    /// `tokenizer_class`, when the vocabulary has `<|startoftext|>`.
    fn of(path: &Path, tokenizer: &Tokenizer) -> Result<TextNormalization> {
        let config = path.with_file_name("tokenizer_config.json");
        let config = config.is_file().then(|| read_json(&config)).transpose()?;
        let class = config
            .as_ref()
            .and_then(|c| c.get("tokenizer_class"))
            .and_then(Value::as_str);
        let clip = match class {
            Some(class) => CLIP_TOKENIZER_CLASSES.contains(&class),
            None => tokenizer.token_to_id(CLIP_START_OF_TEXT).is_some(),
        };
        Ok(if clip {
            TextNormalization::Clip
        } else {
            TextNormalization::TokenizerOnly
        })
    }
}

/// CLIP's split pattern as `tokenizer.json` files spell it (transformers'
/// `CLIPConverter`; some put the two special tokens first).
const HF_CLIP_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const HF_CLIP_SPLIT_WITH_SPECIALS: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// The same pattern as OpenAI's tokenizer matches it. OpenAI compiles it
/// with `re.IGNORECASE`, which on lower-cased text changes two things
/// (checked over every code point with the `regex` module): `'s` also
/// matches `'ſ` (U+017F folds to `s`), and U+0345 (which folds to a letter)
/// is matched by no alternative, so it separates words as a space does.
/// The special tokens are left to the tokenizer's added tokens, as before.
const OPENAI_CLIP_SPLIT: &str =
    r"'[s\x{17F}]|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{345}]+";

/// Makes a CLIP `tokenizer.json` pipeline split as OpenAI's tokenizer does
/// after [`clip_text::clean`]. Only the stages of the shape every CLIP
/// tokenizer has are changed; another shape is kept, not being known.
fn openai_pipeline(tokenizer: &mut Tokenizer) -> std::result::Result<(), tokenizers::Error> {
    // NFC, white-space runs to one space, lower case: the cleaning ends in
    // the last two, and NFC would recompose what OpenAI's tokenizer leaves
    // apart (a combining accent from `&#769;` in HTML, say).
    let clip_normalizer = json!({
        "type": "Sequence",
        "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"},
        ],
    });
    if tokenizer
        .get_normalizer()
        .and_then(|n| serde_json::to_value(n).ok())
        == Some(clip_normalizer)
    {
        tokenizer.with_normalizer(None::<NormalizerWrapper>)?;
    }
    // CLIP's split, then bytes to BPE characters. ByteLevel's own GPT-2
    // split is turned off: on CLIP's pieces it splits nothing, except the
    // `'ſ` that OpenAI keeps whole.
    let pre_tokenizer = tokenizer
        .get_pre_tokenizer()
        .and_then(|p| serde_json::to_value(p).ok())
        .unwrap_or(Value::Null);
    let stages = pre_tokenizer["pretokenizers"].as_array();
    let is_clip = pre_tokenizer["type"] == "Sequence"
        && stages.is_some_and(|stages| {
            stages.len() == 2
                && stages[0]["type"] == "Split"
                && [HF_CLIP_SPLIT, HF_CLIP_SPLIT_WITH_SPECIALS]
                    .iter()
                    .any(|p| stages[0]["pattern"]["Regex"] == *p)
                && stages[0]["behavior"] == "Removed"
                && stages[0]["invert"] == true
                && stages[1]["type"] == "ByteLevel"
                && stages[1]["add_prefix_space"] == false
        });
    if is_clip {
        let openai: PreTokenizerWrapper = serde_json::from_value(json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": OPENAI_CLIP_SPLIT},
                 "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                 "use_regex": false},
            ],
        }))?;
        tokenizer.with_pre_tokenizer(Some(openai));
    }
    Ok(())
}

/// A model's tokenizer. `Send + Sync`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    context_length: usize,
    pad_id: u32,
    normalization: TextNormalization,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating to `context_length` ids; the
    /// [`TextNormalization`] follows the `tokenizer_config.json` beside it.
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
        let normalization = TextNormalization::of(path, &inner)?;
        if normalization == TextNormalization::Clip {
            openai_pipeline(&mut inner).map_err(tokenizer_err)?;
        }
        let pad_id = inner
            .token_to_id(CLIP_END_OF_TEXT)
            .or_else(|| inner.get_padding().map(|p| p.pad_id))
            .unwrap_or(0);
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
            context_length,
            pad_id,
            normalization,
        })
    }

    /// The token ids of each text, start and end tokens included.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let texts: Vec<String> = match self.normalization {
            TextNormalization::Clip => texts.iter().map(|t| clip_text::clean(t)).collect(),
            TextNormalization::TokenizerOnly => texts.iter().map(|&t| t.to_owned()).collect(),
        };
        let encodings =
            self.inner
                .encode_batch(texts, true)
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

    /// What is done to texts before the `tokenizer.json` pipeline.
    pub fn normalization(&self) -> TextNormalization {
        self.normalization
    }
}
