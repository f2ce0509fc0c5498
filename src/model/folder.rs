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
//! Each layout may hold variants of its towers beside the fp32 files, named
//! as Hugging Face ONNX repositories name them (`vision_model_int8.onnx`
//! beside `vision_model.onnx`, `model_fp16.onnx` beside `model.onnx`); the
//! folder is opened for one variant ([`VariantChoice`]).
//!
//! This module only reads files; it does not start ONNX Runtime.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::preprocess::PreprocessConfig;
use crate::error::{Error, ModelError, ModelProblem, Result};
pub use crate::types::Layout;
use crate::types::{Device, ModelVariant, VariantChoice};

/// The variants `auto` tries on the CPU, first found first: the
/// int8-weight ones run fastest there.
const AUTO_CPU: [ModelVariant; 3] = [
    ModelVariant::Int8,
    ModelVariant::Quantized,
    ModelVariant::Uint8,
];
/// The variants `auto` tries on CUDA and TensorRT.
const AUTO_GPU: [ModelVariant; 1] = [ModelVariant::Fp16];

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
    /// The variant of the towers below.
    pub variant: ModelVariant,
    /// The image tower (of [`Self::variant`]).
    pub vision_model: PathBuf,
    /// The text tower (of [`Self::variant`]).
    pub text_model: PathBuf,
    /// The fp32 towers' files, which may be absent when a variant runs.
    fp32_towers: (PathBuf, PathBuf),
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
    /// Recognises the folder's layout and reads its configuration, for the
    /// fp32 towers.
    pub fn open(root: &Path) -> Result<ModelFolder> {
        ModelFolder::open_variant(root, VariantChoice::default(), Device::Cpu)
    }

    /// [`open`](Self::open) for the variant `choice` picks on `device`.
    pub fn open_variant(root: &Path, choice: VariantChoice, device: Device) -> Result<ModelFolder> {
        ModelFolder::recognise(root)?.select(choice, device)
    }

    /// The folder's layout and configuration, with the fp32 tower paths
    /// (not yet checked: a folder may hold only a variant).
    pub(crate) fn recognise(root: &Path) -> Result<ModelFolder> {
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
            variant: ModelVariant::Fp32,
            fp32_towers: (vision_model.clone(), text_model.clone()),
            vision_model,
            text_model,
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
        let (vision_model, text_model) = (
            root.join("visual").join("model.onnx"),
            root.join("textual").join("model.onnx"),
        );
        Ok(ModelFolder {
            root: root.to_path_buf(),
            layout,
            variant: ModelVariant::Fp32,
            fp32_towers: (vision_model.clone(), text_model.clone()),
            vision_model,
            text_model,
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

    /// The folder for the variant `choice` picks on `device`, its two
    /// tower files checked.
    pub(crate) fn select(mut self, choice: VariantChoice, device: Device) -> Result<ModelFolder> {
        let available = self.available_variants();
        let variant = match choice {
            VariantChoice::Exact(variant) => variant,
            VariantChoice::Auto => {
                let preferred: &[ModelVariant] = match device {
                    Device::Cpu => &AUTO_CPU,
                    Device::Cuda | Device::TensorRt => &AUTO_GPU,
                    // The device is not known yet: the encoder asks again
                    // once it is.
                    Device::Auto => &[],
                };
                preferred
                    .iter()
                    .copied()
                    .find(|v| available.contains(v))
                    .unwrap_or(ModelVariant::Fp32)
            }
        };
        let (vision, text) = self.towers_of(variant);
        for tower in [&vision, &text] {
            if !tower.is_file() {
                let problem = if variant == ModelVariant::Fp32 {
                    ModelProblem::MissingFile {
                        layout: self.layout,
                    }
                } else {
                    ModelProblem::MissingVariant {
                        variant,
                        available: available.clone(),
                    }
                };
                return Err(self::problem(tower, problem));
            }
        }
        self.variant = variant;
        self.vision_model = vision;
        self.text_model = text;
        Ok(self)
    }

    /// The files of `variant`'s towers (which may not exist).
    pub fn towers_of(&self, variant: ModelVariant) -> (PathBuf, PathBuf) {
        let (vision, text) = &self.fp32_towers;
        (
            with_suffix(vision, variant.file_suffix()),
            with_suffix(text, variant.file_suffix()),
        )
    }

    /// The variants whose two towers the folder has.
    pub fn available_variants(&self) -> Vec<ModelVariant> {
        ModelVariant::ALL
            .into_iter()
            .filter(|&v| {
                let (vision, text) = self.towers_of(v);
                vision.is_file() && text.is_file()
            })
            .collect()
    }

    /// The towers that identify the model whichever variant runs: the fp32
    /// ones when the folder has them, else the variant's own.
    pub fn identity_towers(&self) -> (&Path, &Path) {
        let (vision, text) = &self.fp32_towers;
        if vision.is_file() && text.is_file() {
            (vision, text)
        } else {
            (&self.vision_model, &self.text_model)
        }
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

/// `dir/name.onnx` as `dir/name{suffix}.onnx`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}.onnx"))
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
