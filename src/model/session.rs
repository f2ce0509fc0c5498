//! ONNX Runtime sessions for the two towers: building them with the chosen
//! execution provider, finding their tensor names from the session, and
//! running them in batches that fit what the export allows.
//!
//! `Session::run` needs `&mut`, so each tower keeps a small [`Pool`] of
//! sessions in a channel: a caller takes one, runs, and puts it back (even
//! when it panics); the public handle stays `&self` and `Send + Sync`.
//!
//! On a GPU the image tower runs with I/O binding ([`Staging`]): each
//! session writes its batches into host buffers allocated once per batch
//! shape, pinned so the copy to the device is one DMA, binds only the
//! embedding output (a ViT's `last_hidden_state` is 40 times larger and is
//! never copied back), and rounds dynamic batches up to powers of two so
//! that the provider sees a handful of shapes, each tuned (and, on
//! TensorRT, built) once.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};
use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::{Array2, ArrayView4, Ix2};
use ort::ep;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynTensor, Outlet, TensorElementType, TensorRef};

/// What imgdb needs to know of a model's input or output.
#[derive(Clone, Debug)]
pub(crate) struct TensorInfo {
    name: String,
    ty: Option<TensorElementType>,
    shape: Option<Vec<i64>>,
}

impl TensorInfo {
    fn of(outlet: &Outlet) -> TensorInfo {
        TensorInfo {
            name: outlet.name().to_string(),
            ty: outlet.dtype().tensor_type(),
            shape: outlet.dtype().tensor_shape().map(|s| s.to_vec()),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

use super::{Device, EncoderOptions};
use crate::error::{Error, ModelError, ModelProblem, Result, TensorRole};

/// Names accepted for each tensor, most specific first (the ones Hugging
/// Face/Xenova, Qdrant, Immich and open_clip exports use).
const IMAGE_INPUTS: [&str; 4] = ["pixel_values", "image", "input", "images"];
const IMAGE_OUTPUTS: [&str; 4] = ["image_embeds", "embedding", "embeddings", "image_features"];
const TEXT_IDS: [&str; 4] = ["input_ids", "text", "input", "tokens"];
const TEXT_MASK: &str = "attention_mask";
const TEXT_OUTPUTS: [&str; 4] = ["text_embeds", "embedding", "embeddings", "text_features"];

/// How many items a run may take: the export's batch axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchAxis {
    /// Any number (the export's batch axis is dynamic).
    Dynamic,
    /// Exactly this many (an export fixed at batch 1 is common).
    Fixed(usize),
}

impl BatchAxis {
    fn of(shape: Option<&[i64]>) -> BatchAxis {
        match shape.and_then(|s| s.first()) {
            Some(&n) if n > 0 => BatchAxis::Fixed(n as usize),
            _ => BatchAxis::Dynamic,
        }
    }

    /// Runs `count` items in batches this axis accepts (at most `max_batch`
    /// when dynamic) and returns one output row per item.
    ///
    /// `run(items, rows)` builds and runs one batch: `rows` is the batch
    /// size the tensor must have, larger than `items` for the last batch of
    /// a fixed axis; the caller pads those rows and their outputs are
    /// dropped here.
    /// With `bucketed`, a dynamic axis is fed a power of two of rows (or
    /// `max_batch`), the smallest that holds the items, padded the same way.
    fn run_batches(
        self,
        count: usize,
        max_batch: usize,
        bucketed: bool,
        mut run: impl FnMut(Range<usize>, usize) -> Result<Array2<f32>>,
    ) -> Result<Vec<Vec<f32>>> {
        let chunk = match self {
            BatchAxis::Dynamic => max_batch.max(1),
            BatchAxis::Fixed(n) => n,
        };
        let mut vectors = Vec::with_capacity(count);
        for start in (0..count).step_by(chunk) {
            let items = start..(start + chunk).min(count);
            let real = items.len();
            let rows = match self {
                BatchAxis::Dynamic if bucketed => real.next_power_of_two().min(chunk),
                BatchAxis::Dynamic => real,
                BatchAxis::Fixed(n) => n,
            };
            let out = run(items, rows)?;
            vectors.extend(out.outer_iter().take(real).map(|row| row.to_vec()));
        }
        Ok(vectors)
    }
}

/// The float type of an image input or an embedding output: float16
/// exports (`_fp16`) take and give float16, converted here at the boundary
/// so that the rest of imgdb only sees f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatType {
    F32,
    F16,
}

impl FloatType {
    fn of(outlet: &TensorInfo) -> Option<FloatType> {
        match outlet.ty? {
            TensorElementType::Float32 => Some(FloatType::F32),
            TensorElementType::Float16 => Some(FloatType::F16),
            _ => None,
        }
    }
}

/// Integer input types of text towers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdType {
    I32,
    I64,
}

/// Items (sessions) lent to one caller at a time. Every item lives either
/// in the channel or in exactly one [`Lent`] guard, which puts it back when
/// dropped, so a panicking caller cannot leave the next one waiting forever.
pub(crate) struct Pool<T> {
    take: Receiver<T>,
    give: Sender<T>,
}

impl<T> Pool<T> {
    fn new(items: Vec<T>) -> Pool<T> {
        // Room for every item: giving one back never blocks.
        let (give, take) = crossbeam_channel::bounded(items.len().max(1));
        for item in items {
            give.send(item).expect("room for every item");
        }
        Pool { take, give }
    }

    /// Runs `f` with an item of the pool, waiting for one if all are lent.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut lent = Lent {
            item: Some(self.take.recv().expect("the pool owns a sender")),
            home: &self.give,
        };
        f(lent.item.as_mut().expect("held until dropped"))
    }
}

/// An item out of its pool; dropping it (on return or unwinding) gives it
/// back. A session is returned even after a panic in the caller's closure:
/// a Rust panic between ort calls does not leave the session half-run, and
/// no fresh one could be built here.
struct Lent<'p, T> {
    item: Option<T>,
    home: &'p Sender<T>,
}

impl<T> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            // The pool holds the receiver as long as this borrow lives.
            let _ = self.home.send(item);
        }
    }
}

/// One session and, when it runs with I/O binding, its staging buffers.
pub(crate) struct Worker {
    session: Session,
    staging: Option<Staging>,
}

/// The host memory an image tower's batches are staged in and its outputs
/// read back into: pinned on CUDA and TensorRT, ordinary on the CPU.
struct Staging {
    allocator: Allocator,
    output_memory: MemoryInfo<'static>,
    /// One input tensor per batch shape (rows), allocated on first use;
    /// bucketed batches keep these few.
    inputs: Vec<(usize, DynTensor)>,
}

impl Staging {
    fn new(session: &Session, device: Device, device_id: i32) -> ort::Result<Staging> {
        Ok(match device {
            Device::Cpu | Device::Auto => Staging {
                allocator: Allocator::default(),
                output_memory: MemoryInfo::new(
                    AllocationDevice::CPU,
                    0,
                    AllocatorType::Device,
                    MemoryType::Default,
                )?,
                inputs: Vec::new(),
            },
            Device::Cuda | Device::TensorRt => {
                let pinned = |memory| {
                    MemoryInfo::new(
                        AllocationDevice::CUDA_PINNED,
                        device_id,
                        AllocatorType::Device,
                        memory,
                    )
                };
                Staging {
                    allocator: Allocator::new(session, pinned(MemoryType::CPUInput)?)?,
                    output_memory: pinned(MemoryType::CPUOutput)?,
                    inputs: Vec::new(),
                }
            }
        })
    }

    /// The input tensor of `shape` (rows first), allocated once.
    fn input(&mut self, shape: [usize; 4], ty: FloatType) -> ort::Result<&mut DynTensor> {
        let rows = shape[0];
        let index = match self.inputs.iter().position(|(r, _)| *r == rows) {
            Some(index) => index,
            None => {
                let element = match ty {
                    FloatType::F32 => TensorElementType::Float32,
                    FloatType::F16 => TensorElementType::Float16,
                };
                let tensor = DynTensor::new(&self.allocator, element, shape)?;
                self.inputs.push((rows, tensor));
                self.inputs.len() - 1
            }
        };
        Ok(&mut self.inputs[index].1)
    }
}

/// The sessions of one model file.
pub(crate) struct Sessions {
    path: PathBuf,
    pool: Pool<Worker>,
    /// Whether the sessions run with I/O binding (and bucketed batches).
    bound: bool,
}

impl Sessions {
    /// Runs `f` with a session, waiting for one if all are busy.
    fn with<R>(&self, f: impl FnOnce(&mut Session) -> Result<R>) -> Result<R> {
        self.pool.with(|worker| f(&mut worker.session))
    }

    /// Runs `f` with a session and its staging (none when not bound).
    fn with_staging<R>(
        &self,
        f: impl FnOnce(&mut Session, Option<&mut Staging>) -> Result<R>,
    ) -> Result<R> {
        self.pool
            .with(|worker| f(&mut worker.session, worker.staging.as_mut()))
    }

    fn onnx_error(&self) -> impl Fn(ort::Error) -> Error + '_ {
        |source| {
            ModelError::Onnx {
                path: self.path.clone(),
                source,
            }
            .into()
        }
    }
}

/// Builds one session of `path` on `device` (which must not be `Auto`).
fn session(
    environment: &ort::environment::Environment,
    path: &Path,
    device: Device,
    options: &EncoderOptions,
) -> Result<Session> {
    let onnx = |source: ort::Error| ModelError::Onnx {
        path: path.to_path_buf(),
        source,
    };
    let threads = options.intra_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get()) / options.sessions.max(1)
    });
    let mut builder = Session::builder(environment)
        .map_err(onnx)?
        .with_optimization_level(options.optimization.level())
        .map_err(|e| onnx(e.into()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| onnx(e.into()))?;
    let providers = match device {
        Device::Cpu | Device::Auto => vec![ep::CPU::default().build()],
        Device::Cuda => vec![
            ep::CUDA::default()
                .with_device_id(options.device_id)
                .build()
                .error_on_failure(),
        ],
        Device::TensorRt => {
            let mut trt = ep::TensorRT::default()
                .with_device_id(options.device_id)
                .with_fp16(options.tensorrt_fp16);
            if let Some(cache) = &options.tensorrt_cache {
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(cache.display())
                    .with_timing_cache(true)
                    .with_timing_cache_path(cache.display());
            }
            // CUDA runs what TensorRT cannot take.
            vec![
                trt.build().error_on_failure(),
                ep::CUDA::default()
                    .with_device_id(options.device_id)
                    .build(),
            ]
        }
    };
    builder = builder
        .with_execution_providers(providers)
        .map_err(|source| ModelError::Provider {
            device,
            source: source.into(),
        })?;
    builder
        .commit_from_file(path)
        .map_err(|source| match device {
            Device::Cpu | Device::Auto => onnx(source).into(),
            _ => ModelError::Provider { device, source }.into(),
        })
}

/// `options.sessions` sessions of `path`, with the model's inputs and
/// outputs; with `bound`, each with its [`Staging`].
pub(crate) fn pool(
    environment: &ort::environment::Environment,
    path: &Path,
    device: Device,
    options: &EncoderOptions,
    bound: bool,
) -> Result<(Sessions, Vec<TensorInfo>, Vec<TensorInfo>)> {
    let workers = (0..options.sessions.max(1))
        .map(|_| {
            let session = session(environment, path, device, options)?;
            let staging = if bound {
                let staging = Staging::new(&session, device, options.device_id);
                Some(staging.map_err(|source| ModelError::Provider { device, source })?)
            } else {
                None
            };
            Ok(Worker { session, staging })
        })
        .collect::<Result<Vec<Worker>>>()?;
    let first = &workers[0].session;
    let inputs = first.inputs().iter().map(TensorInfo::of).collect();
    let outputs = first.outputs().iter().map(TensorInfo::of).collect();
    Ok((
        Sessions {
            path: path.to_path_buf(),
            pool: Pool::new(workers),
            bound,
        },
        inputs,
        outputs,
    ))
}

fn names(outlets: &[TensorInfo]) -> Vec<String> {
    outlets.iter().map(|o| o.name().to_string()).collect()
}

/// The outlet named by the first of `accepted` present, or the only one.
fn pick<'a>(
    outlets: &'a [TensorInfo],
    accepted: &[&str],
    path: &Path,
    role: TensorRole,
) -> Result<&'a TensorInfo> {
    accepted
        .iter()
        .find_map(|name| outlets.iter().find(|o| o.name() == *name))
        .or(if outlets.len() == 1 {
            outlets.first()
        } else {
            None
        })
        .ok_or_else(|| {
            ModelError::Folder {
                path: path.to_path_buf(),
                problem: ModelProblem::UnknownTensor {
                    role,
                    found: names(outlets),
                    accepted: accepted.iter().map(|s| s.to_string()).collect(),
                },
            }
            .into()
        })
}

fn shape(outlet: &TensorInfo) -> Option<&[i64]> {
    outlet.shape.as_deref()
}

fn wrong_tensor(path: &Path, outlet: &TensorInfo, expected: &'static str) -> Error {
    ModelError::Folder {
        path: path.to_path_buf(),
        problem: ModelProblem::WrongTensor {
            name: outlet.name().to_string(),
            found: format!("{:?} {:?}", outlet.ty, shape(outlet)),
            expected,
        },
    }
    .into()
}

/// The image tower.
pub(crate) struct VisionTower {
    sessions: Sessions,
    input: String,
    input_type: FloatType,
    output: String,
    output_type: FloatType,
    batch: BatchAxis,
    /// (height, width) of one input.
    size: (usize, usize),
}

impl VisionTower {
    pub fn new(
        sessions: Sessions,
        inputs: &[TensorInfo],
        outputs: &[TensorInfo],
        size: (u32, u32),
    ) -> Result<VisionTower> {
        let path = sessions.path.clone();
        let input = pick(inputs, &IMAGE_INPUTS, &path, TensorRole::ImageInput)?;
        if inputs.len() != 1 {
            return Err(ModelError::Folder {
                path,
                problem: ModelProblem::UnexpectedInputs {
                    found: names(inputs),
                    expected: "one image input",
                },
            }
            .into());
        }
        let dims = shape(input).unwrap_or_default();
        let (width, height) = (size.0 as i64, size.1 as i64);
        let fits = |dim: Option<&i64>, want: i64| dim.is_none_or(|&d| d < 1 || d == want);
        let input_type = FloatType::of(input);
        if input_type.is_none()
            || dims.len() != 4
            || !fits(dims.get(1), 3)
            || !fits(dims.get(2), height)
            || !fits(dims.get(3), width)
        {
            return Err(wrong_tensor(
                &path,
                input,
                "float32 or float16 [batch, 3, height, width] matching the preprocessing",
            ));
        }
        let output = pick(outputs, &IMAGE_OUTPUTS, &path, TensorRole::ImageOutput)?;
        Ok(VisionTower {
            input: input.name().to_string(),
            input_type: input_type.expect("checked above"),
            output: output.name().to_string(),
            output_type: output_type(output, &path)?,
            batch: BatchAxis::of(Some(dims)),
            size: (size.1 as usize, size.0 as usize),
            sessions,
        })
    }

    /// Embeds `count` images given as one CHW tensor after another.
    pub fn run(&self, pixels: &[f32], count: usize, max_batch: usize) -> Result<Vec<Vec<f32>>> {
        let (h, w) = self.size;
        let per_image = 3 * h * w;
        assert_eq!(pixels.len(), count * per_image);
        let bucketed = self.sessions.bound;
        self.batch
            .run_batches(count, max_batch, bucketed, |items, rows| {
                let real = &pixels[items.start * per_image..items.end * per_image];
                let shape = [rows, 3, h, w];
                self.sessions
                    .with_staging(|session, staging| match staging {
                        Some(staging) => self.run_bound(session, staging, real, shape),
                        None => self.run_plain(session, real, shape),
                    })
            })
    }

    /// One batch through `session.run`, from a padded copy of `real`.
    fn run_plain(
        &self,
        session: &mut Session,
        real: &[f32],
        shape: [usize; 4],
    ) -> Result<Array2<f32>> {
        let onnx = self.sessions.onnx_error();
        let mut batch = real.to_vec();
        batch.resize(shape.iter().product(), 0.0);
        let halves: Vec<f16> = match self.input_type {
            FloatType::F32 => Vec::new(),
            FloatType::F16 => batch.iter().map(|&x| f16::from_f32(x)).collect(),
        };
        let tensor: SessionInputValue = match self.input_type {
            FloatType::F32 => TensorRef::from_array_view(
                ArrayView4::from_shape(shape, &batch).expect("sized above"),
            )
            .map_err(&onnx)?
            .into(),
            FloatType::F16 => TensorRef::from_array_view(
                ArrayView4::from_shape(shape, &halves).expect("sized above"),
            )
            .map_err(&onnx)?
            .into(),
        };
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(&onnx)?;
        embeddings(
            &outputs[self.output.as_str()],
            self.output_type,
            &self.sessions,
        )
    }

    /// One batch through I/O binding: `real` written (and converted) into
    /// the staged input of `shape`, the rest of it zeroed, only the
    /// embedding output bound.
    fn run_bound(
        &self,
        session: &mut Session,
        staging: &mut Staging,
        real: &[f32],
        shape: [usize; 4],
    ) -> Result<Array2<f32>> {
        let onnx = self.sessions.onnx_error();
        let tensor = staging.input(shape, self.input_type).map_err(&onnx)?;
        match self.input_type {
            FloatType::F32 => stage(
                tensor.try_extract_tensor_mut::<f32>().map_err(&onnx)?.1,
                real,
                |to, from| to.copy_from_slice(from),
            ),
            FloatType::F16 => stage(
                tensor.try_extract_tensor_mut::<f16>().map_err(&onnx)?.1,
                real,
                |to, from| to.convert_from_f32_slice(from),
            ),
        }
        let mut binding = session.create_binding().map_err(&onnx)?;
        binding
            .bind_input(self.input.as_str(), &*tensor)
            .map_err(&onnx)?;
        binding
            .bind_output_to_device(self.output.as_str(), &staging.output_memory)
            .map_err(&onnx)?;
        let outputs = session.run_binding(&binding).map_err(&onnx)?;
        embeddings(
            &outputs[self.output.as_str()],
            self.output_type,
            &self.sessions,
        )
    }
}

/// Writes `real` at the start of the staged `buffer` with `copy` and zeroes
/// the padding rows after it.
fn stage<T: Copy + Default>(buffer: &mut [T], real: &[f32], copy: impl FnOnce(&mut [T], &[f32])) {
    let (head, padding) = buffer.split_at_mut(real.len());
    copy(head, real);
    padding.fill(T::default());
}

/// The text tower.
pub(crate) struct TextTower {
    sessions: Sessions,
    ids: String,
    id_type: IdType,
    mask: Option<(String, IdType)>,
    output: String,
    output_type: FloatType,
    batch: BatchAxis,
    /// A sequence length the export fixes (Immich pads to the context length).
    fixed_length: Option<usize>,
}

fn id_type(outlet: &TensorInfo) -> Option<IdType> {
    match outlet.ty? {
        TensorElementType::Int64 => Some(IdType::I64),
        TensorElementType::Int32 => Some(IdType::I32),
        _ => None,
    }
}

impl TextTower {
    pub fn new(
        sessions: Sessions,
        inputs: &[TensorInfo],
        outputs: &[TensorInfo],
    ) -> Result<TextTower> {
        let path = sessions.path.clone();
        let candidates: Vec<TensorInfo> = inputs
            .iter()
            .filter(|o| o.name() != TEXT_MASK)
            .cloned()
            .collect();
        let ids = pick(&candidates, &TEXT_IDS, &path, TensorRole::TextInput)?;
        let mask = inputs.iter().find(|o| o.name() == TEXT_MASK);
        if inputs.len() > 1 + usize::from(mask.is_some()) {
            return Err(ModelError::Folder {
                path,
                problem: ModelProblem::UnexpectedInputs {
                    found: names(inputs),
                    expected: "token ids, and optionally attention_mask",
                },
            }
            .into());
        }
        let dims = shape(ids).unwrap_or_default();
        let id_type = id_type(ids)
            .filter(|_| dims.len() == 2)
            .ok_or_else(|| wrong_tensor(&path, ids, "int32 or int64 [batch, sequence]"))?;
        let mask = match mask {
            Some(m) => Some((
                m.name().to_string(),
                id_type_of_mask(m)
                    .ok_or_else(|| wrong_tensor(&path, m, "int32 or int64 [batch, sequence]"))?,
            )),
            None => None,
        };
        let output = pick(outputs, &TEXT_OUTPUTS, &path, TensorRole::TextOutput)?;
        Ok(TextTower {
            ids: ids.name().to_string(),
            id_type,
            mask,
            output: output.name().to_string(),
            output_type: output_type(output, &path)?,
            batch: BatchAxis::of(Some(dims)),
            fixed_length: dims.get(1).filter(|&&d| d > 0).map(|&d| d as usize),
            sessions,
        })
    }

    /// Embeds token id sequences; `pad` fills shorter sequences.
    pub fn run(&self, ids: &[Vec<u32>], pad: u32, max_batch: usize) -> Result<Vec<Vec<f32>>> {
        self.batch
            .run_batches(ids.len(), max_batch, false, |items, rows| {
                let texts = &ids[items];
                let longest = texts.iter().map(Vec::len).max().unwrap_or(0);
                let length = self.fixed_length.unwrap_or(longest).max(1);
                let mut id_matrix = Array2::<i64>::from_elem((rows, length), i64::from(pad));
                let mut mask = Array2::<i64>::zeros((rows, length));
                for (row, text) in texts.iter().enumerate() {
                    for (col, &id) in text.iter().take(length).enumerate() {
                        id_matrix[(row, col)] = i64::from(id);
                        mask[(row, col)] = 1;
                    }
                }
                self.sessions.with(|session| {
                    let onnx = self.sessions.onnx_error();
                    let id_i32 = id_matrix.mapv(|v| v as i32);
                    let mask_i32 = mask.mapv(|v| v as i32);
                    let mut inputs = vec![(
                        self.ids.as_str(),
                        id_tensor(self.id_type, &id_matrix, &id_i32).map_err(&onnx)?,
                    )];
                    if let Some((name, kind)) = &self.mask {
                        inputs.push((
                            name.as_str(),
                            id_tensor(*kind, &mask, &mask_i32).map_err(&onnx)?,
                        ));
                    }
                    let outputs = session.run(inputs).map_err(&onnx)?;
                    embeddings(
                        &outputs[self.output.as_str()],
                        self.output_type,
                        &self.sessions,
                    )
                })
            })
    }
}

/// An integer input in the type the model declares.
fn id_tensor<'a>(
    kind: IdType,
    wide: &'a Array2<i64>,
    narrow: &'a Array2<i32>,
) -> ort::Result<SessionInputValue<'a>> {
    Ok(match kind {
        IdType::I64 => TensorRef::from_array_view(wide.view())?.into(),
        IdType::I32 => TensorRef::from_array_view(narrow.view())?.into(),
    })
}

fn id_type_of_mask(outlet: &TensorInfo) -> Option<IdType> {
    id_type(outlet).filter(|_| shape(outlet).is_none_or(|s| s.len() == 2))
}

/// The float type of an embedding output.
fn output_type(outlet: &TensorInfo, path: &Path) -> Result<FloatType> {
    FloatType::of(outlet)
        .ok_or_else(|| wrong_tensor(path, outlet, "float32 or float16 [batch, dim]"))
}

/// A `[batch, dim]` output as an owned f32 matrix.
fn embeddings(
    value: &ort::value::DynValue,
    ty: FloatType,
    sessions: &Sessions,
) -> Result<Array2<f32>> {
    let onnx = sessions.onnx_error();
    let matrix = match ty {
        FloatType::F32 => value.try_extract_array::<f32>().map_err(onnx)?.to_owned(),
        FloatType::F16 => value
            .try_extract_array::<f16>()
            .map_err(onnx)?
            .mapv(f16::to_f32),
    };
    let shape = matrix.shape().to_vec();
    matrix.into_dimensionality::<Ix2>().map_err(|_| {
        ModelError::Folder {
            path: sessions.path.clone(),
            problem: ModelProblem::WrongOutputShape { found: shape },
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_with_gives_the_item_back() {
        let pool = Pool::new(vec![7u32]);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.with(|item| {
                *item += 1;
                panic!("a caller's bug");
            })
        }));
        assert!(panicked.is_err());
        // Back in the channel: the next caller does not wait.
        assert_eq!(pool.take.len(), 1);
        assert_eq!(pool.with(|item| *item), 8);
        assert_eq!(pool.take.len(), 1);
    }

    #[test]
    fn a_fixed_batch_pads_the_last_run_and_drops_the_padding() {
        let mut runs = Vec::new();
        let vectors = BatchAxis::Fixed(4)
            .run_batches(6, 100, false, |items, rows| {
                runs.push((items.clone(), rows));
                // Row r of the output carries the item number (padding: -1).
                Ok(Array2::from_shape_fn((rows, 1), |(r, _)| {
                    let item = items.start + r;
                    if item < items.end { item as f32 } else { -1.0 }
                }))
            })
            .unwrap();
        assert_eq!(runs, vec![(0..4, 4), (4..6, 4)]);
        let items: Vec<f32> = vectors.iter().map(|v| v[0]).collect();
        assert_eq!(items, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn a_bucketed_batch_pads_to_a_power_of_two_up_to_max_batch() {
        let mut runs = Vec::new();
        BatchAxis::Dynamic
            .run_batches(59, 24, true, |items, rows| {
                runs.push((items.len(), rows));
                Ok(Array2::zeros((rows, 1)))
            })
            .unwrap();
        // 24 + 24 + 11: full batches of max_batch (not a power of two), the
        // last one padded to 16.
        assert_eq!(runs, vec![(24, 24), (24, 24), (11, 16)]);
        let mut rows_of = |count| {
            let mut rows = 0;
            BatchAxis::Dynamic
                .run_batches(count, 256, true, |_, r| {
                    rows = r;
                    Ok(Array2::zeros((r, 1)))
                })
                .unwrap();
            rows
        };
        assert_eq!([1, 2, 3, 5, 200].map(&mut rows_of), [1, 2, 4, 8, 256]);
    }

    #[test]
    fn a_dynamic_batch_takes_at_most_max_batch_without_padding() {
        let mut runs = Vec::new();
        let vectors = BatchAxis::Dynamic
            .run_batches(5, 2, false, |items, rows| {
                runs.push((items.clone(), rows));
                Ok(Array2::zeros((rows, 3)))
            })
            .unwrap();
        assert_eq!(runs, vec![(0..2, 2), (2..4, 2), (4..5, 1)]);
        assert_eq!(vectors.len(), 5);
    }
}
