//! The encoder: a CLIP-family model folder run by ONNX Runtime, turning
//! images and texts into L2-normalised vectors of one space.
//!
//! - `folder.rs` recognises the model folder and reads its configuration;
//! - `runtime.rs` finds and loads the ONNX Runtime library;
//! - `session.rs` builds the sessions on an execution provider and runs the towers;
//! - `decode.rs`, `resample.rs` and `preprocess.rs` turn files into model inputs;
//! - `tokenizer.rs` turns texts into token ids, after `clip_text.rs`'s
//!   cleaning for CLIP models.
//!
//! The [`Encoder`] handle is `Send + Sync` and cheap to clone; concurrent
//! callers share each tower's pool of sessions.

mod clip_text;
mod decode;
mod digest;
mod folder;
mod limits;
mod preprocess;
mod resample;
pub(crate) mod runtime;
mod session;
mod thumbnail;
mod tokenizer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

pub use crate::error::{SearchedPlace, SearchedPlaces};
pub use decode::{Decoded, IMAGE_EXTENSIONS, has_image_extension};
pub use folder::{Layout, ModelFolder};
pub(crate) use limits::contained_as;
pub use limits::{DecodeLimits, decoding_contained};
pub use preprocess::{
    Prepared, PreprocessConfig, Preprocessor, ResampleFilter, Resize, Transparency,
};
pub use runtime::{ONNXRUNTIME_LIBRARY, ONNXRUNTIME_VERSION};
pub use tokenizer::{TextNormalization, TextTokenizer};

use crate::error::{Error, ModelError, ModelProblem, Result, TowerKind};
use crate::space::{EmbeddingSpace, Fingerprint};
pub use crate::types::{Device, VariantChoice};
use session::{TextTower, VisionTower};

/// ONNX Runtime's graph optimisation level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimization {
    /// None.
    Disabled,
    /// Constant folding and redundant node removal.
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, layout transformations included (the default).
    All,
}

impl Optimization {
    fn level(self) -> ort::session::builder::GraphOptimizationLevel {
        use ort::session::builder::GraphOptimizationLevel as Level;
        match self {
            Optimization::Disabled => Level::Disable,
            Optimization::Basic => Level::Level1,
            Optimization::Extended => Level::Level2,
            Optimization::All => Level::All,
        }
    }
}

/// Which towers an encoder loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Towers {
    /// Both: images and texts (the default).
    #[default]
    Both,
    /// The text tower only: text queries and zero-shot label vectors, for
    /// a fraction of the load time and memory.
    Text,
    /// The image tower only: ingest and image queries.
    Image,
}

impl Towers {
    fn image(self) -> bool {
        self != Towers::Text
    }

    fn text(self) -> bool {
        self != Towers::Image
    }
}

/// How an encoder is loaded. Defaults: CPU, all cores, full graph
/// optimisation, one session per tower, batches of 32, both towers, no
/// digest cache.
#[derive(Clone, Debug)]
pub struct EncoderOptions {
    /// Where to run. Default [`Device::Cpu`].
    pub device: Device,
    /// The GPU to use. Default 0.
    pub device_id: i32,
    /// Threads per session (default: the cores divided among the sessions).
    pub intra_threads: Option<usize>,
    /// Graph optimisation. Default [`Optimization::All`].
    pub optimization: Optimization,
    /// Sessions per tower, for concurrent callers. Default 1.
    pub sessions: usize,
    /// The largest batch handed to a tower at once. Default 32.
    pub batch_size: usize,
    /// The ONNX Runtime library, if not found automatically (see `runtime.rs`).
    pub runtime: Option<PathBuf>,
    /// TensorRT's engine and timing cache folder (strongly advised: building
    /// engines takes minutes). Default: none.
    pub tensorrt_cache: Option<PathBuf>,
    /// Let TensorRT run in fp16. Default true.
    pub tensorrt_fp16: bool,
    /// Which towers to load. Default [`Towers::Both`].
    pub towers: Towers,
    /// Run the image tower with I/O binding: batches staged in host buffers
    /// allocated once per shape (pinned on CUDA and TensorRT), only the
    /// embedding read back, dynamic batches rounded up to powers of two so
    /// the provider sees few shapes. Default: on for CUDA and TensorRT, off
    /// on the CPU (where a plain run copies no less).
    pub io_binding: Option<bool>,
    /// Which variant of the weights to load. Default fp32 (the reference
    /// vectors); [`VariantChoice::Auto`] takes int8 on the CPU and fp16 on
    /// CUDA/TensorRT when the folder has them.
    pub variant: VariantChoice,
    /// A folder where the digests of model files are kept by path, size,
    /// modification and change time, so that a load does not re-hash
    /// hundreds of megabytes to fingerprint the model. Default: none (every
    /// load hashes the files); [`crate::resolve::encoder_options`] sets one.
    pub digest_cache: Option<PathBuf>,
}

impl Default for EncoderOptions {
    fn default() -> EncoderOptions {
        EncoderOptions {
            device: Device::Cpu,
            device_id: 0,
            intra_threads: None,
            optimization: Optimization::All,
            sessions: 1,
            batch_size: 32,
            runtime: None,
            tensorrt_cache: None,
            tensorrt_fp16: true,
            towers: Towers::Both,
            io_binding: None,
            variant: VariantChoice::default(),
            digest_cache: None,
        }
    }
}

/// The execution provider that actually runs the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// The device in use (never `Auto`).
    pub device: Device,
    /// Why `auto` fell back to the CPU, when it did.
    pub fallback: Option<String>,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fallback {
            None => write!(f, "{}", self.device),
            Some(reason) => write!(f, "{} (auto fell back: {reason})", self.device),
        }
    }
}

/// A loaded CLIP model. `Send + Sync`; clones share the sessions.
#[derive(Clone)]
pub struct Encoder {
    inner: Arc<Inner>,
}

struct Inner {
    folder: ModelFolder,
    space: EmbeddingSpace,
    preprocessor: Preprocessor,
    tokenizer: TextTokenizer,
    vision: Option<VisionTower>,
    text: Option<TextTower>,
    provider: Provider,
    runtime: PathBuf,
    batch_size: usize,
}

impl Encoder {
    /// Loads the model folder `dir` (see `schema/model.md`).
    pub fn load(dir: impl AsRef<Path>, options: &EncoderOptions) -> Result<Encoder> {
        let found = ModelFolder::recognise(dir.as_ref())?;
        let runtime = runtime::runtime(options.runtime.as_deref())?;
        let tokenizer = TextTokenizer::load(&found.tokenizer, found.context_length)?;
        let preprocessor = Preprocessor::new(found.preprocess.clone());

        let (device, fallback) = match options.device {
            Device::Auto => {
                let folder = found.clone().select(options.variant, Device::Cuda)?;
                match Encoder::towers(&runtime, &folder, &preprocessor, Device::Cuda, options) {
                    Ok(towers) => {
                        return Encoder::finish(
                            folder,
                            runtime.path,
                            tokenizer,
                            preprocessor,
                            towers,
                            Device::Cuda,
                            None,
                            options,
                        );
                    }
                    Err(e) => {
                        let reason = e.chain();
                        warn!("device auto: CUDA did not start ({reason}); running on the CPU");
                        (Device::Cpu, Some(reason))
                    }
                }
            }
            device => (device, None),
        };
        let folder = found.select(options.variant, device)?;
        let towers = Encoder::towers(&runtime, &folder, &preprocessor, device, options)?;
        Encoder::finish(
            folder,
            runtime.path,
            tokenizer,
            preprocessor,
            towers,
            device,
            fallback,
            options,
        )
    }

    fn towers(
        runtime: &runtime::Runtime,
        folder: &ModelFolder,
        preprocessor: &Preprocessor,
        device: Device,
        options: &EncoderOptions,
    ) -> Result<(Option<VisionTower>, Option<TextTower>)> {
        let vision = if options.towers.image() {
            let bound = options
                .io_binding
                .unwrap_or(matches!(device, Device::Cuda | Device::TensorRt));
            let (pool, inputs, outputs) = session::pool(
                &runtime.environment,
                &folder.vision_model,
                device,
                options,
                bound,
            )?;
            Some(VisionTower::new(
                pool,
                &inputs,
                &outputs,
                preprocessor.output_size(),
            )?)
        } else {
            None
        };
        let text = if options.towers.text() {
            let (pool, inputs, outputs) = session::pool(
                &runtime.environment,
                &folder.text_model,
                device,
                options,
                false,
            )?;
            Some(TextTower::new(pool, &inputs, &outputs)?)
        } else {
            None
        };
        Ok((vision, text))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        folder: ModelFolder,
        runtime: PathBuf,
        tokenizer: TextTokenizer,
        preprocessor: Preprocessor,
        (vision, text): (Option<VisionTower>, Option<TextTower>),
        device: Device,
        fallback: Option<String>,
        options: &EncoderOptions,
    ) -> Result<Encoder> {
        // One probe through each loaded tower: finds the dimension and
        // proves the model runs before anything is built on it.
        let image_dim = match &vision {
            Some(vision) => Some(
                vision
                    .run(&vec![0.0; preprocessor.tensor_len()], 1, 1)?
                    .first()
                    .map_or(0, Vec::len),
            ),
            None => None,
        };
        let text_dim = match &text {
            Some(text) => Some(
                text.run(&tokenizer.encode(&["a photo"])?, tokenizer.pad_id(), 1)?
                    .first()
                    .map_or(0, Vec::len),
            ),
            None => None,
        };
        let dim = match (image_dim, text_dim) {
            (Some(image), Some(text)) if image == text && image > 0 => image,
            (Some(dim), None) | (None, Some(dim)) if dim > 0 => dim,
            _ => {
                return Err(ModelError::Folder {
                    path: folder.root.clone(),
                    problem: ModelProblem::TowerMismatch {
                        image: image_dim.unwrap_or(0),
                        text: text_dim.unwrap_or(0),
                    },
                }
                .into());
            }
        };
        let fingerprint = fingerprint(&folder, options.digest_cache.as_deref())?;
        let space = EmbeddingSpace {
            model_id: folder.model_id(),
            dim: dim as u32,
            fingerprint,
            variant: folder.variant,
        };
        let provider = Provider { device, fallback };
        info!("{space} on {provider}");
        Ok(Encoder {
            inner: Arc::new(Inner {
                folder,
                space,
                preprocessor,
                tokenizer,
                vision,
                text,
                provider,
                runtime,
                batch_size: options.batch_size.max(1),
            }),
        })
    }

    /// The space of the vectors this model makes.
    pub fn space(&self) -> &EmbeddingSpace {
        &self.inner.space
    }

    /// The execution provider in use.
    pub fn provider(&self) -> &Provider {
        &self.inner.provider
    }

    /// The ONNX Runtime library in use.
    pub fn runtime_path(&self) -> &Path {
        &self.inner.runtime
    }

    /// The model folder.
    pub fn folder(&self) -> &ModelFolder {
        &self.inner.folder
    }

    /// The image preprocessing.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.inner.preprocessor
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.inner.tokenizer
    }

    /// The multiplier of cosine similarities in a zero-shot softmax.
    pub fn logit_scale(&self) -> f32 {
        self.inner.folder.logit_scale
    }

    /// The largest batch given to a tower at once.
    pub fn batch_size(&self) -> usize {
        self.inner.batch_size
    }

    /// Embeds texts.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_tokens(&self.inner.tokenizer.encode(texts)?)
    }

    /// Embeds token id sequences (start and end tokens included).
    pub fn embed_tokens(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let raw = self
            .inner
            .text
            .as_ref()
            .ok_or(ModelError::TowerNotLoaded {
                tower: TowerKind::Text,
            })?
            .run(ids, self.inner.tokenizer.pad_id(), self.inner.batch_size)?;
        unit_vectors(raw)
    }

    /// Embeds `count` preprocessed images laid out one after another (each
    /// [`Preprocessor::tensor_len`] long).
    pub fn embed_pixels(&self, pixels: &[f32], count: usize) -> Result<Vec<Vec<f32>>> {
        let expected = count * self.inner.preprocessor.tensor_len();
        if pixels.len() != expected {
            return Err(Error::DimensionMismatch {
                expected,
                found: pixels.len(),
            });
        }
        let raw = self
            .inner
            .vision
            .as_ref()
            .ok_or(ModelError::TowerNotLoaded {
                tower: TowerKind::Image,
            })?
            .run(pixels, count, self.inner.batch_size)?;
        unit_vectors(raw)
    }

    /// Decodes, preprocesses and embeds an image file.
    pub fn embed_image_file(&self, path: &Path) -> Result<Vec<f32>> {
        let prepared = self.inner.preprocessor.prepare_file(path)?;
        Ok(self.embed_pixels(&prepared.pixels, 1)?.remove(0))
    }
}

/// Model outputs at unit length; a model that outputs a vector without a
/// direction is an error, not a vector of zeros (see `crate::vector`).
fn unit_vectors(raw: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
    raw.iter().map(|v| crate::vector::normalized(v)).collect()
}

/// BLAKE3 of the towers that identify the model (the fp32 ones when the
/// folder has them, whichever variant runs: see [`EmbeddingSpace`]), the
/// tokenizer and the preprocessing (the file digests taken from
/// `digest_cache` when it knows them).
fn fingerprint(folder: &ModelFolder, digest_cache: Option<&Path>) -> Result<Fingerprint> {
    let digest = |path: &Path| digest::file_digest(path, digest_cache);
    let (vision, text) = folder.identity_towers();
    let vision = digest(vision)?;
    let text = digest(text)?;
    let tokenizer = digest(&folder.tokenizer)?;
    let preprocess = folder.preprocess.canonical();
    let context = (folder.context_length as u64).to_le_bytes();
    Ok(Fingerprint::of_parts([
        vision.as_slice(),
        &text,
        &tokenizer,
        preprocess.as_bytes(),
        &context,
    ]))
}
