//! Image preprocessing, equal to the reference pipelines: transformers'
//! `CLIPImageProcessor` (its PIL backend, the original CLIP's) and Immich's
//! `resize_mode: squash`.
//!
//! Steps, on 8-bit RGB from `decode.rs`: resize (the shortest edge to `N`,
//! the long one to `int(N · long / short)`, or squash to an exact size) with
//! the configured filter, antialiased (the filter widens with the scale, as
//! PIL's does), centre crop at `((w − cw) // 2, (h − ch) // 2)`, rescale and
//! normalise into a CHW `f32` tensor. The resize computes only the cropped
//! pixels, with Pillow's own arithmetic (`resample.rs`).

use std::path::Path;

use image::RgbImage;
use serde_json::Value;

use super::decode::{Decoded, decode};
use super::limits::{DecodeLimits, contained};
use super::resample;
use crate::error::{Error, ImageError, ModelError, ModelProblem, Result};

/// How the image is brought to the model's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// The shortest edge to this many pixels, keeping the aspect ratio.
    ShortestEdge(u32),
    /// Exactly this size, ignoring the aspect ratio (Immich's `squash`).
    Exact {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

/// Resampling filters, by their PIL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResampleFilter {
    /// PIL `NEAREST` (0).
    Nearest,
    /// PIL `BOX` (4).
    Box,
    /// PIL `BILINEAR` (2).
    Bilinear,
    /// PIL `HAMMING` (5).
    Hamming,
    /// PIL `BICUBIC` (3): cubic convolution with a = −0.5 (Catmull-Rom).
    Bicubic,
    /// PIL `LANCZOS` (1).
    Lanczos,
}

impl ResampleFilter {
    /// From PIL's numeric code, as `preprocessor_config.json` gives it.
    pub fn from_pil(code: u64) -> Option<ResampleFilter> {
        Some(match code {
            0 => ResampleFilter::Nearest,
            1 => ResampleFilter::Lanczos,
            2 => ResampleFilter::Bilinear,
            3 => ResampleFilter::Bicubic,
            4 => ResampleFilter::Box,
            5 => ResampleFilter::Hamming,
            _ => return None,
        })
    }
}

/// What becomes of transparent pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transparency {
    /// Composited onto white, as transformers' `CLIPImageProcessor` does.
    OntoWhite,
    /// Dropped, keeping the colour transparent pixels store, as Pillow's
    /// `convert("RGB")` does (Immich).
    Dropped,
}

/// The preprocessing of one model, parsed from its folder.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    /// What becomes of transparent pixels.
    pub transparency: Transparency,
    /// The resize, if any.
    pub resize: Option<Resize>,
    /// The centre crop (width, height), if any.
    pub crop: Option<(u32, u32)>,
    /// The resampling filter.
    pub filter: ResampleFilter,
    /// The factor from 8-bit values to the model's range (1/255 for CLIP).
    pub rescale: f32,
    /// Per-channel mean subtracted after rescaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

fn bad(path: &Path, key: &'static str) -> Error {
    ModelError::Folder {
        path: path.to_path_buf(),
        problem: ModelProblem::BadKey { key },
    }
    .into()
}

fn triple(
    value: Option<&Value>,
    path: &Path,
    key: &'static str,
    default: [f32; 3],
) -> Result<[f32; 3]> {
    let Some(value) = value else {
        return Ok(default);
    };
    let list: Vec<f32> = value
        .as_array()
        .ok_or_else(|| bad(path, key))?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(path, key))?;
    match list.as_slice() {
        [a, b, c] => Ok([*a, *b, *c]),
        [a] => Ok([*a; 3]),
        _ => Err(bad(path, key)),
    }
}

/// A size given as `224`, `{"shortest_edge": 224}`, `{"height": h, "width": w}` or `[h, w]`.
fn size(
    value: &Value,
    path: &Path,
    key: &'static str,
    number_is_shortest_edge: bool,
) -> Result<Resize> {
    let dim = |v: &Value| {
        v.as_u64()
            .filter(|&n| (1..=16384).contains(&n))
            .map(|n| n as u32)
    };
    if let Some(n) = dim(value) {
        return Ok(if number_is_shortest_edge {
            Resize::ShortestEdge(n)
        } else {
            Resize::Exact {
                width: n,
                height: n,
            }
        });
    }
    if let Some(n) = value.get("shortest_edge").and_then(dim) {
        return Ok(Resize::ShortestEdge(n));
    }
    if let (Some(height), Some(width)) = (
        value.get("height").and_then(dim),
        value.get("width").and_then(dim),
    ) {
        return Ok(Resize::Exact { width, height });
    }
    if let Some([h, w]) = value.as_array().map(Vec::as_slice)
        && let (Some(height), Some(width)) = (dim(h), dim(w))
    {
        return Ok(Resize::Exact { width, height });
    }
    Err(bad(path, key))
}

/// CLIP's normalisation, the default of `CLIPImageProcessor`, with the
/// digits OpenAI publishes.
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

impl PreprocessConfig {
    /// From a Hugging Face `preprocessor_config.json` (`CLIPImageProcessor`).
    pub fn from_hugging_face(json: &Value, path: &Path) -> Result<PreprocessConfig> {
        let flag = |key: &str| json.get(key).and_then(Value::as_bool).unwrap_or(true);
        let resize = if flag("do_resize") {
            let value = json.get("size").ok_or_else(|| bad(path, "size"))?;
            Some(size(value, path, "size", true)?)
        } else {
            None
        };
        let crop = if flag("do_center_crop") {
            match json.get("crop_size") {
                Some(value) => match size(value, path, "crop_size", false)? {
                    Resize::Exact { width, height } => Some((width, height)),
                    Resize::ShortestEdge(_) => return Err(bad(path, "crop_size")),
                },
                None => None,
            }
        } else {
            None
        };
        let filter = match json.get("resample") {
            Some(v) => v
                .as_u64()
                .and_then(ResampleFilter::from_pil)
                .ok_or_else(|| bad(path, "resample"))?,
            None => ResampleFilter::Bicubic,
        };
        let rescale = if flag("do_rescale") {
            json.get("rescale_factor")
                .and_then(Value::as_f64)
                .unwrap_or(1.0 / 255.0) as f32
        } else {
            1.0
        };
        let (mean, std) = if flag("do_normalize") {
            (
                triple(json.get("image_mean"), path, "image_mean", CLIP_MEAN)?,
                triple(json.get("image_std"), path, "image_std", CLIP_STD)?,
            )
        } else {
            ([0.0; 3], [1.0; 3])
        };
        PreprocessConfig {
            transparency: Transparency::OntoWhite,
            resize,
            crop,
            filter,
            rescale,
            mean,
            std,
        }
        .checked(path)
    }

    /// From an Immich `preprocess_cfg.json`.
    pub fn from_immich(json: &Value, path: &Path) -> Result<PreprocessConfig> {
        let target = size(
            json.get("size").ok_or_else(|| bad(path, "size"))?,
            path,
            "size",
            false,
        )?;
        let Resize::Exact { width, height } = target else {
            return Err(bad(path, "size"));
        };
        let filter = match json
            .get("interpolation")
            .and_then(Value::as_str)
            .unwrap_or("bicubic")
        {
            "bicubic" => ResampleFilter::Bicubic,
            "bilinear" => ResampleFilter::Bilinear,
            "nearest" => ResampleFilter::Nearest,
            "lanczos" => ResampleFilter::Lanczos,
            _ => return Err(bad(path, "interpolation")),
        };
        let (resize, crop) = match json
            .get("resize_mode")
            .and_then(Value::as_str)
            .unwrap_or("shortest")
        {
            "shortest" => (
                Resize::ShortestEdge(width.min(height)),
                Some((width, height)),
            ),
            "squash" => (target, None),
            _ => return Err(bad(path, "resize_mode")),
        };
        PreprocessConfig {
            transparency: Transparency::Dropped,
            resize: Some(resize),
            crop,
            filter,
            rescale: 1.0 / 255.0,
            mean: triple(json.get("mean"), path, "mean", CLIP_MEAN)?,
            std: triple(json.get("std"), path, "std", CLIP_STD)?,
        }
        .checked(path)
    }

    /// Refuses configurations whose output size is not fixed (a model takes
    /// one size) or whose std has a zero.
    fn checked(self, path: &Path) -> Result<PreprocessConfig> {
        if self.output_size().is_none() {
            return Err(bad(path, "crop_size"));
        }
        if self.std.contains(&0.0) {
            return Err(bad(path, "image_std"));
        }
        Ok(self)
    }

    /// The (width, height) of every output tensor.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        match (self.crop, self.resize) {
            (Some(crop), _) => Some(crop),
            (None, Some(Resize::Exact { width, height })) => Some((width, height)),
            _ => None,
        }
    }

    /// A canonical description, part of the model's fingerprint.
    pub fn canonical(&self) -> String {
        format!("{self:?}")
    }
}

/// A decoded and preprocessed image.
pub struct Prepared {
    /// The model input: 3 × height × width, channel-major.
    pub pixels: Vec<f32>,
    /// The file's width after orientation.
    pub width: u32,
    /// The file's height after orientation.
    pub height: u32,
    /// The file's format.
    pub format: crate::ImageFormat,
}

/// Turns images into model inputs. `Send + Sync`; cheap to clone.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    config: PreprocessConfig,
    width: u32,
    height: u32,
    limits: DecodeLimits,
    dct_margin: Option<u32>,
}

impl Preprocessor {
    /// A preprocessor for `config`.
    pub fn new(config: PreprocessConfig) -> Preprocessor {
        let (width, height) = config.output_size().expect("checked when parsed");
        Preprocessor {
            config,
            width,
            height,
            limits: DecodeLimits::default(),
            dct_margin: None,
        }
    }

    /// Lets JPEGs larger than `margin` times the model's input be decoded at
    /// the smallest DCT scale n/8 that keeps them `margin` times larger:
    /// several times faster on camera photos, but no longer equal to the
    /// reference (BENCHMARKS.md measures by how much). Default: off.
    pub fn with_dct_scaling(mut self, margin: Option<u32>) -> Preprocessor {
        self.dct_margin = margin.filter(|&m| m > 0);
        self
    }

    /// The same, with other decode limits.
    pub fn with_limits(mut self, limits: DecodeLimits) -> Preprocessor {
        self.limits = limits;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// The (width, height) of the model input.
    pub fn output_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The number of `f32` in one input (3 × height × width).
    pub fn tensor_len(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }

    /// The smallest short side a JPEG may be decoded at, when scaling is on.
    fn decode_target(&self) -> Option<u32> {
        let margin = self.dct_margin?;
        let target = match self.config.resize? {
            Resize::ShortestEdge(n) => n.max(self.width).max(self.height),
            Resize::Exact { width, height } => width.max(height),
        };
        Some(target.saturating_mul(margin))
    }

    /// Decodes file bytes (`path` names them in errors) and preprocesses
    /// them. A panic in a decoder is an error of this file.
    pub fn prepare(&self, bytes: &[u8], path: &Path) -> Result<Prepared> {
        contained(path, || {
            let decoded = self.decode_uncontained(bytes, path)?;
            Ok(Prepared {
                pixels: self.tensor(&decoded.rgb, path)?,
                width: decoded.width,
                height: decoded.height,
                format: decoded.format,
            })
        })
    }

    /// Reads the file at `path` within the limits and preprocesses it.
    pub fn prepare_file(&self, path: &Path) -> Result<Prepared> {
        self.prepare(&self.read_file(path)?, path)
    }

    /// Reads the file at `path`, refusing one over the size limit or one
    /// that is not a regular file.
    pub fn read_file(&self, path: &Path) -> Result<Vec<u8>> {
        self.limits.read_file(path)
    }

    /// Decodes file bytes as the preprocessing needs them (possibly
    /// scaled). A panic in a decoder is an error of this file.
    pub fn decode(&self, bytes: &[u8], path: &Path) -> Result<Decoded> {
        contained(path, || self.decode_uncontained(bytes, path))
    }

    fn decode_uncontained(&self, bytes: &[u8], path: &Path) -> Result<Decoded> {
        decode(
            bytes,
            path,
            self.decode_target(),
            self.config.transparency,
            &self.limits,
        )
    }

    /// The model input of an RGB image.
    pub fn tensor(&self, rgb: &RgbImage, path: &Path) -> Result<Vec<f32>> {
        let resized = self.resized(rgb, path)?;
        let plane = self.width as usize * self.height as usize;
        let mut out = vec![0.0f32; 3 * plane];
        let c = &self.config;
        let scale: [f32; 3] = std::array::from_fn(|k| c.rescale / c.std[k]);
        let offset: [f32; 3] = std::array::from_fn(|k| c.mean[k] / c.std[k]);
        for (i, px) in resized.as_raw().chunks_exact(3).enumerate() {
            for k in 0..3 {
                out[k * plane + i] = f32::from(px[k]) * scale[k] - offset[k];
            }
        }
        Ok(out)
    }

    /// The image after resize and crop, before rescale and normalisation:
    /// what the parity tests compare, and what `imgdb debug preprocess` shows.
    pub fn resized(&self, rgb: &RgbImage, path: &Path) -> Result<RgbImage> {
        let (src_w, src_h) = rgb.dimensions();
        if src_w == 0 || src_h == 0 {
            return Err(Error::image(path)(ImageError::Empty));
        }
        let (resized_w, resized_h) = match self.config.resize {
            Some(Resize::ShortestEdge(n)) => {
                let (short, long) = (src_w.min(src_h), src_w.max(src_h));
                // transformers: int(size * long / short), truncated.
                let new_long = (f64::from(n) * f64::from(long) / f64::from(short)) as u32;
                if src_w <= src_h {
                    (n, new_long.max(1))
                } else {
                    (new_long.max(1), n)
                }
            }
            Some(Resize::Exact { width, height }) => (width, height),
            None => (src_w, src_h),
        };
        // The crop, in resized coordinates; a crop larger than the image is
        // padded with black (as transformers pads).
        let (crop_w, crop_h) = self.config.crop.unwrap_or((resized_w, resized_h));
        let (left, top) = (
            (i64::from(resized_w) - i64::from(crop_w)).div_euclid(2),
            (i64::from(resized_h) - i64::from(crop_h)).div_euclid(2),
        );
        let (inner_left, inner_top) = (left.max(0) as u32, top.max(0) as u32);
        let inner_w = crop_w.min(resized_w);
        let inner_h = crop_h.min(resized_h);
        let crop = resample::Crop {
            out_w: resized_w,
            out_h: resized_h,
            left: inner_left,
            top: inner_top,
            width: inner_w,
            height: inner_h,
        };
        let inner = resample::resize_and_crop(rgb, &crop, self.config.filter);
        if (inner_w, inner_h) == (crop_w, crop_h) {
            return Ok(inner);
        }
        let mut padded = RgbImage::new(crop_w, crop_h);
        image::imageops::replace(&mut padded, &inner, (-left).max(0), (-top).max(0));
        Ok(padded)
    }
}
