//! Token ids against the references: OpenAI CLIP's own tokenizer for CLIP
//! models (fixtures/text/, made by scripts/fixtures/make_caption_refs.py),
//! the Hugging Face tokenizer for tokenizers imgdb does not clean
//! (fixtures/parity/tokens.json), and which models get the cleaning.

mod common;

use std::path::{Path, PathBuf};

use common::root;
use imgdb::{Error, ModelError, TextNormalization, TextTokenizer};
use serde_json::Value;

const CONTEXT_LENGTH: usize = 77;

fn tiny_tokenizer() -> PathBuf {
    root().join("fixtures/models/tiny-clip/tokenizer.json")
}

fn load(path: &Path) -> TextTokenizer {
    TextTokenizer::load(path, CONTEXT_LENGTH).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| u32::try_from(v.as_u64().unwrap()).unwrap())
        .collect()
}

fn json_lines(path: &str) -> Vec<Value> {
    std::fs::read_to_string(root().join(path))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// (text, OpenAI's ids) of every caption of the corpus.
fn openai_references() -> Vec<(String, Vec<u32>)> {
    let captions = json_lines("fixtures/text/captions.jsonl");
    let references = json_lines("fixtures/text/caption_ids.jsonl");
    assert_eq!(
        captions.len(),
        references.len(),
        "regenerate caption_ids.jsonl"
    );
    captions
        .iter()
        .zip(&references)
        .map(|(caption, reference)| {
            let text = caption["text"].as_str().unwrap();
            assert_eq!(reference["text"], text, "regenerate caption_ids.jsonl");
            (text.to_owned(), ids(&reference["ids"]))
        })
        .collect()
}

/// A folder holding the tiny model's tokenizer.json and, when given, a
/// tokenizer_config.json of that content.
fn tokenizer_folder(config: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::copy(tiny_tokenizer(), &path).unwrap();
    if let Some(config) = config {
        std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
    }
    (dir, path)
}

#[test]
fn every_caption_gets_openai_clips_ids() {
    let tokenizer = load(&tiny_tokenizer());
    assert_eq!(tokenizer.normalization(), TextNormalization::Clip);
    let references = openai_references();
    assert!(
        references.len() >= 150,
        "only {} captions",
        references.len()
    );
    let texts: Vec<&str> = references.iter().map(|(t, _)| t.as_str()).collect();
    let ours = tokenizer.encode(&texts).unwrap();
    let differing: Vec<String> = references
        .iter()
        .zip(&ours)
        .filter(|((_, expected), ours)| expected != *ours)
        .map(|((text, expected), ours)| {
            format!("{text:?}\n  ours   {ours:?}\n  OpenAI {expected:?}")
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} captions differ from OpenAI's ids:\n{}",
        differing.len(),
        references.len(),
        differing.join("\n")
    );
}

#[test]
fn long_captions_keep_the_end_token_at_77() {
    let tokenizer = load(&tiny_tokenizer());
    let long = "a red circle ".repeat(40);
    let ids = tokenizer.encode(&[&long]).unwrap().remove(0);
    assert_eq!(ids.len(), CONTEXT_LENGTH);
    assert_eq!((ids[0], ids[CONTEXT_LENGTH - 1]), (49406, 49407));
}

#[test]
fn the_immich_tokenizer_is_cleaned_too() {
    let tokenizer = load(&root().join("fixtures/models/tiny-clip-immich/textual/tokenizer.json"));
    assert_eq!(tokenizer.normalization(), TextNormalization::Clip);
    for (text, expected) in openai_references() {
        assert_eq!(
            tokenizer.encode(&[&text]).unwrap().remove(0),
            expected,
            "{text:?}"
        );
    }
}

#[test]
fn a_tokenizer_of_another_class_is_not_cleaned() {
    let (_dir, path) = tokenizer_folder(Some(r#"{"tokenizer_class": "BertTokenizer"}"#));
    let tokenizer = load(&path);
    assert_eq!(tokenizer.normalization(), TextNormalization::TokenizerOnly);
    // Only tokenizer.json's own pipeline: the Hugging Face ids, entities,
    // ligatures and curly quotes included.
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/parity/tokens.json")).unwrap(),
    )
    .unwrap();
    let cases = reference.as_array().unwrap();
    assert!(cases.len() >= 200, "only {} captions", cases.len());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(&[text]).unwrap().remove(0),
            ids(&case["ids"]),
            "{text:?}"
        );
    }
    let clip = load(&tiny_tokenizer());
    for text in ["fish &amp; chips", "ﬁsh", "ＡＢＣ", "“quoted”", "cafÃ©"] {
        assert_ne!(
            tokenizer.encode(&[text]).unwrap(),
            clip.encode(&[text]).unwrap(),
            "{text:?} is cleaned without a CLIP tokenizer class"
        );
    }
}

#[test]
fn clip_tokenizer_classes_are_cleaned() {
    for class in ["CLIPTokenizer", "CLIPTokenizerFast"] {
        let (_dir, path) = tokenizer_folder(Some(&format!(r#"{{"tokenizer_class": "{class}"}}"#)));
        assert_eq!(
            load(&path).normalization(),
            TextNormalization::Clip,
            "{class}"
        );
    }
}

#[test]
fn without_a_tokenizer_class_clips_start_token_decides() {
    // No tokenizer_config.json, or one without the key: the tiny tokenizer
    // has <|startoftext|>, so it is CLIP's.
    for config in [None, Some(r#"{"model_max_length": 77}"#)] {
        let (_dir, path) = tokenizer_folder(config);
        assert_eq!(
            load(&path).normalization(),
            TextNormalization::Clip,
            "{config:?}"
        );
    }
    // A vocabulary without it is not.
    let dir = tempfile::tempdir().unwrap();
    let mut tokenizer: Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_tokenizer()).unwrap()).unwrap();
    tokenizer["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] != "<|startoftext|>");
    tokenizer["model"]["vocab"]
        .as_object_mut()
        .unwrap()
        .remove("<|startoftext|>");
    tokenizer["post_processor"] = Value::Null;
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    assert_eq!(
        load(&path).normalization(),
        TextNormalization::TokenizerOnly
    );
}

#[test]
fn an_unreadable_tokenizer_config_is_refused() {
    let (_dir, path) = tokenizer_folder(Some("{not json"));
    let err = TextTokenizer::load(&path, CONTEXT_LENGTH).err().unwrap();
    assert!(
        matches!(&err, Error::Model(ModelError::Config { path, .. }) if path.ends_with("tokenizer_config.json")),
        "{err:?}"
    );
}
