//! Errors of loading and running a model: the model folder, ONNX Runtime,
//! execution providers, the tokenizer.

use std::path::PathBuf;

use super::ErrorKind;
use crate::types::{Device, Layout, ModelVariant};

/// Loading or running a CLIP model failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// No model folder was given and none was pulled.
    #[error(
        "no model: give a model folder (a CLIP model in ONNX form, see schema/model.md; \
         `--model DIR` or IMGDB_MODEL), or run `imgdb model pull` to fetch one into {}",
        cache.display()
    )]
    NoModel {
        /// The model cache that was looked in.
        cache: PathBuf,
    },

    /// No ONNX Runtime library was found.
    #[error("ONNX Runtime {version} was not found; looked in:{searched}\nto fix: {fix}")]
    RuntimeNotFound {
        /// The version needed.
        version: &'static str,
        /// Every place tried, with what was there.
        searched: SearchedPlaces,
        /// The command that installs it.
        fix: &'static str,
    },

    /// The ONNX Runtime library could not be loaded (wrong file or version).
    #[error("cannot load ONNX Runtime from {path}")]
    RuntimeLoad {
        /// The library file.
        path: PathBuf,
        /// ort's error.
        #[source]
        source: ort::LoadDynamicError,
    },

    /// ONNX Runtime failed on a model file.
    #[error("ONNX Runtime failed on {path}")]
    Onnx {
        /// The model file (or runtime library).
        path: PathBuf,
        /// ort's error.
        #[source]
        source: ort::Error,
    },

    /// The execution provider asked for cannot start here.
    #[error(
        "execution provider `{device}` could not start; GPU providers need the onnxruntime-gpu library \
         (scripts/fetch-onnxruntime.sh --gpu) with CUDA 13 and cuDNN 9; or use --device cpu, or auto"
    )]
    Provider {
        /// The device asked for.
        device: Device,
        /// ort's error.
        #[source]
        source: ort::Error,
    },

    /// A model folder is incomplete or inconsistent.
    #[error("model {path}: {problem}")]
    Folder {
        /// The folder or file concerned.
        path: PathBuf,
        /// What is wrong.
        problem: ModelProblem,
    },

    /// A model configuration file is not valid JSON.
    #[error("model configuration {path} is not valid JSON")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The tokenizer failed to load or to encode.
    #[error("tokenizer {path} failed")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers crate's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The encoder was loaded without the tower this call needs
    /// (see [`EncoderOptions::towers`](crate::EncoderOptions::towers)).
    #[error("the {tower} tower was not loaded (EncoderOptions::towers)")]
    TowerNotLoaded {
        /// The tower the call needs.
        tower: TowerKind,
    },
}

impl ModelError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ModelError::NoModel { .. } => ErrorKind::NotFound,
            ModelError::Provider { .. } => ErrorKind::Unsupported,
            ModelError::TowerNotLoaded { .. } => ErrorKind::InvalidInput,
            ModelError::RuntimeNotFound { .. }
            | ModelError::RuntimeLoad { .. }
            | ModelError::Onnx { .. }
            | ModelError::Folder { .. }
            | ModelError::Config { .. }
            | ModelError::Tokenizer { .. } => ErrorKind::Model,
        }
    }
}

/// One place the library was looked for, and why it was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchedPlace {
    /// Where (a path, or a description such as `python3 -c 'import onnxruntime'`).
    pub place: String,
    /// What was found there.
    pub outcome: String,
}

/// Every place the library was looked for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SearchedPlaces(pub Vec<SearchedPlace>);

impl std::fmt::Display for SearchedPlaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, searched) in self.0.iter().enumerate() {
            write!(f, "\n  {}. {}: {}", i + 1, searched.place, searched.outcome)?;
        }
        Ok(())
    }
}

/// One of a CLIP model's two towers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TowerKind {
    /// The image tower.
    Image,
    /// The text tower.
    Text,
}

impl std::fmt::Display for TowerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TowerKind::Image => "image",
            TowerKind::Text => "text",
        })
    }
}

/// Which tensor of a model a problem concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorRole {
    /// The image tower's input.
    ImageInput,
    /// The image tower's output.
    ImageOutput,
    /// The text tower's token input.
    TextInput,
    /// The text tower's output.
    TextOutput,
}

impl std::fmt::Display for TensorRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TensorRole::ImageInput => "image input",
            TensorRole::ImageOutput => "image output",
            TensorRole::TextInput => "text input",
            TensorRole::TextOutput => "text output",
        })
    }
}

/// What is wrong with a model folder.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ModelProblem {
    /// The path is not a folder.
    NotAFolder,
    /// No known layout matches the files.
    UnknownLayout {
        /// The entries found.
        found: Vec<String>,
    },
    /// A file the layout needs is missing.
    MissingFile {
        /// The layout recognised.
        layout: Layout,
    },
    /// The variant asked for has no file here.
    MissingVariant {
        /// The variant asked for.
        variant: ModelVariant,
        /// The variants whose two towers the folder has.
        available: Vec<ModelVariant>,
    },
    /// A configuration key is missing.
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A configuration key has a value imgdb cannot use.
    BadKey {
        /// The key.
        key: &'static str,
    },
    /// No tensor has a name imgdb knows for this role.
    UnknownTensor {
        /// The role.
        role: TensorRole,
        /// The names the model has.
        found: Vec<String>,
        /// The names accepted.
        accepted: Vec<String>,
    },
    /// The model has inputs imgdb cannot feed.
    UnexpectedInputs {
        /// The inputs the model has.
        found: Vec<String>,
        /// What was expected.
        expected: &'static str,
    },
    /// A tensor has the wrong type or shape.
    WrongTensor {
        /// The tensor.
        name: String,
        /// Its type and shape.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An output is not a `[batch, dim]` matrix.
    WrongOutputShape {
        /// Its shape.
        found: Vec<usize>,
    },
    /// The towers give vectors of different dimensions.
    TowerMismatch {
        /// The image tower's dimension.
        image: usize,
        /// The text tower's dimension.
        text: usize,
    },
}

impl std::fmt::Display for ModelProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelProblem::NotAFolder => f.write_str("not a folder"),
            ModelProblem::UnknownLayout { found } => write!(
                f,
                "not a model folder: expected onnx/vision_model.onnx + onnx/text_model.onnx (Hugging Face), \
                 a vision and a text folder with model.onnx (Qdrant), or visual/ + textual/ (Immich); found {found:?}"
            ),
            ModelProblem::MissingFile { layout } => {
                write!(f, "missing; the {layout} layout needs it")
            }
            ModelProblem::MissingVariant { variant, available } => {
                let available: Vec<&str> = available.iter().map(|v| v.name()).collect();
                write!(
                    f,
                    "missing: the folder has no {variant} variant of this tower (variants with \
                     both towers here: {}); `imgdb model pull --variant {variant}` fetches it",
                    if available.is_empty() {
                        "none".to_string()
                    } else {
                        available.join(", ")
                    }
                )
            }
            ModelProblem::MissingKey { key } => write!(f, "missing key `{key}`"),
            ModelProblem::BadKey { key } => write!(f, "key `{key}` has a value imgdb cannot use"),
            ModelProblem::UnknownTensor {
                role,
                found,
                accepted,
            } => {
                write!(
                    f,
                    "no {role} tensor: the model has {found:?}, imgdb accepts {accepted:?}"
                )
            }
            ModelProblem::UnexpectedInputs { found, expected } => {
                write!(f, "inputs {found:?}, but imgdb feeds {expected}")
            }
            ModelProblem::WrongTensor {
                name,
                found,
                expected,
            } => {
                write!(f, "tensor `{name}` is {found}, expected {expected}")
            }
            ModelProblem::WrongOutputShape { found } => {
                write!(f, "output of shape {found:?}, expected [batch, dim]")
            }
            ModelProblem::TowerMismatch { image, text } => write!(
                f,
                "the towers disagree: images give {image}-dimensional vectors, texts {text}-dimensional"
            ),
        }
    }
}
