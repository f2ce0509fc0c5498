//! Model folders: which files make a CLIP model, in the layouts users bring.
//!
//! The contract is `schema/model.md`. Three layouts are recognised:
//! - Hugging Face / Xenova: `onnx/vision_model.onnx`, `onnx/text_model.onnx`,
//!   `preprocessor_config.json`, `tokenizer.json`, `config.json`;
//! - split towers (Qdrant publishes each tower as its own repository): two
//!   subfolders, one named `*vision*`/`*visual*` and one `*text*`, each with
//!   `model.onnx`, the preprocessing config beside the vision model and the
//!   tokenizer beside the text model (or either at the root);
//! - Immich: `visual/model.onnx` + `visual/preprocess_cfg.json`,
//!   `textual/model.onnx` + `textual/tokenizer.json`, `config.json` with
//!   `text_cfg.context_length`.
//!
//! This module only reads files; it does not start ONNX Runtime.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::preprocess::PreprocessConfig;
use crate::error::{Error, ModelError, ModelProblem, Result};
pub use crate::types::Layout;

/// CLIP's context length, used when a folder does not say.
const DEFAULT_CONTEXT_LENGTH: usize = 77;
/// OpenAI CLIP's trained logit scale (`exp(4.6052)`), used when a folder
/// does not give `logit_scale`.
const DEFAULT_LOGIT_SCALE: f32 = 100.0;

/// The files of a recognised model folder and what was read from them.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    /// The folder.
    pub root: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// The image tower.
    pub vision_model: PathBuf,
    /// The text tower.
    pub text_model: PathBuf,
    /// The tokenizer.
    pub tokenizer: PathBuf,
    /// Where the preprocessing came from.
    pub preprocess_file: PathBuf,
    /// The image preprocessing.
    pub preprocess: PreprocessConfig,
    /// Token ids per text, start and end included.
    pub context_length: usize,
    /// The multiplier of cosine similarities before a softmax (zero-shot).
    pub logit_scale: f32,
}

fn problem(path: &Path, problem: ModelProblem) -> Error {
    ModelError::Folder {
        path: path.to_path_buf(),
        problem,
    }
    .into()
}

fn need(path: PathBuf, layout: Layout) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(problem(&path, ModelProblem::MissingFile { layout }))
    }
}

/// Reads a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    serde_json::from_str(&text).map_err(|source| {
        ModelError::Config {
            path: path.to_path_buf(),
            source,
        }
        .into()
    })
}

/// The first of `candidates` that exists, else the first (for the error).
fn first_existing(candidates: &[PathBuf]) -> PathBuf {
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or(&candidates[0])
        .clone()
}

impl ModelFolder {
    /// Recognises the folder's layout and reads its configuration.
    pub fn open(root: &Path) -> Result<ModelFolder> {
        if !root.is_dir() {
            return Err(problem(root, ModelProblem::NotAFolder));
        }
        let immich =
            root.join("visual").join("model.onnx").is_file() || root.join("textual").is_dir();
        let hugging_face = root.join("onnx").is_dir();
        if immich {
            return ModelFolder::immich(root);
        }
        if hugging_face {
            return ModelFolder::hugging_face(root);
        }
        if let Some((vision, text)) = split_towers(root) {
            return ModelFolder::split(root, &vision, &text);
        }
        let found = std::fs::read_dir(root)
            .map_err(Error::io(root))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        Err(problem(root, ModelProblem::UnknownLayout { found }))
    }

    fn hugging_face(root: &Path) -> Result<ModelFolder> {
        let layout = Layout::HuggingFace;
        let config = root.join("config.json");
        let config = config.is_file().then(|| read_json(&config)).transpose()?;
        let preprocess_file = need(root.join("preprocessor_config.json"), layout)?;
        let onnx = root.join("onnx");
        ModelFolder::with_towers(
            root,
            layout,
            (onnx.join("vision_model.onnx"), onnx.join("text_model.onnx")),
            root.join("tokenizer.json"),
            preprocess_file,
            config,
        )
    }

    fn split(root: &Path, vision: &Path, text: &Path) -> Result<ModelFolder> {
        let layout = Layout::SplitTowers;
        let preprocess_file = need(
            first_existing(&[
                vision.join("preprocessor_config.json"),
                root.join("preprocessor_config.json"),
            ]),
            layout,
        )?;
        let config = [
            text.join("config.json"),
            root.join("config.json"),
            vision.join("config.json"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| read_json(&p))
        .transpose()?;
        ModelFolder::with_towers(
            root,
            layout,
            (vision.join("model.onnx"), text.join("model.onnx")),
            first_existing(&[text.join("tokenizer.json"), root.join("tokenizer.json")]),
            preprocess_file,
            config,
        )
    }

    /// The rest of the Hugging Face and split-tower layouts, which differ
    /// only in where their files are: checks that the towers and tokenizer
    /// exist, reads the preprocessing and what `config.json` says.
    fn with_towers(
        root: &Path,
        layout: Layout,
        (vision_model, text_model): (PathBuf, PathBuf),
        tokenizer: PathBuf,
        preprocess_file: PathBuf,
        config: Option<Value>,
    ) -> Result<ModelFolder> {
        Ok(ModelFolder {
            root: root.to_path_buf(),
            layout,
            vision_model: need(vision_model, layout)?,
            text_model: need(text_model, layout)?,
            tokenizer: need(tokenizer, layout)?,
            preprocess: PreprocessConfig::from_hugging_face(
                &read_json(&preprocess_file)?,
                &preprocess_file,
            )?,
            preprocess_file,
            context_length: hf_context_length(config.as_ref(), root),
            logit_scale: logit_scale(config.as_ref()),
        })
    }

    fn immich(root: &Path) -> Result<ModelFolder> {
        let layout = Layout::Immich;
        let config_file = need(root.join("config.json"), layout)?;
        let config = read_json(&config_file)?;
        let preprocess_file = need(root.join("visual").join("preprocess_cfg.json"), layout)?;
        let context_length = config
            .pointer("/text_cfg/context_length")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| {
                problem(
                    &config_file,
                    ModelProblem::MissingKey {
                        key: "text_cfg.context_length",
                    },
                )
            })?;
        Ok(ModelFolder {
            root: root.to_path_buf(),
            layout,
            vision_model: need(root.join("visual").join("model.onnx"), layout)?,
            text_model: need(root.join("textual").join("model.onnx"), layout)?,
            tokenizer: need(root.join("textual").join("tokenizer.json"), layout)?,
            preprocess: PreprocessConfig::from_immich(
                &read_json(&preprocess_file)?,
                &preprocess_file,
            )?,
            preprocess_file,
            context_length,
            logit_scale: logit_scale(Some(&config)),
        })
    }

    /// A readable model id: the folder's name.
    pub fn model_id(&self) -> String {
        let canonical = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    }
}

/// Two subfolders, one for each tower.
fn split_towers(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    let named = |needles: &[&str]| {
        dirs.iter()
            .find(|d| {
                let name = d
                    .file_name()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                needles.iter().any(|needle| name.contains(needle))
            })
            .cloned()
    };
    Some((named(&["vision", "visual", "image"])?, named(&["text"])?))
}

fn hf_context_length(config: Option<&Value>, root: &Path) -> usize {
    let from_config = config.and_then(|c| {
        c.pointer("/text_config/max_position_embeddings")
            .or_else(|| c.get("max_position_embeddings"))
            .and_then(Value::as_u64)
    });
    let from_tokenizer = || {
        read_json(&root.join("tokenizer_config.json"))
            .ok()?
            .get("model_max_length")?
            .as_u64()
            .filter(|&n| n <= 4096)
    };
    from_config
        .or_else(from_tokenizer)
        .map_or(DEFAULT_CONTEXT_LENGTH, |n| n as usize)
}

fn logit_scale(config: Option<&Value>) -> f32 {
    config
        .and_then(|c| c.get("logit_scale"))
        .and_then(Value::as_f64)
        .map_or(DEFAULT_LOGIT_SCALE, |s| s as f32)
}
