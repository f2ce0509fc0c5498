//! The domain types every layer speaks: image ids, content hashes,
//! timestamps and image formats. This is the bottom layer: it imports
//! nothing from the rest of the crate.
//!
//! Each type's persisted form is explicit and pinned by a test below, never
//! derived from declaration order: reordering `ImageFormat`'s variants, say,
//! must not change what is on disk (`schema/store.md`, `schema/index.md`).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Lowercase hexadecimal of `bytes` (the one hex encoder of the crate).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The id of an image in a database. Ids are never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ImageId(pub u64);

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The BLAKE3 digest of a file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hexadecimal.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..12])
    }
}

/// Nanoseconds since the Unix epoch (negative before it).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Whole seconds since the epoch.
    pub fn as_secs(&self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    /// RFC 3339 in UTC (`2024-05-01T12:00:00Z`), as JSON output writes it.
    pub fn to_rfc3339(&self) -> String {
        jiff::Timestamp::from_nanosecond(i128::from(self.0))
            .map(|t| t.to_string())
            .unwrap_or_else(|_| self.0.to_string())
    }

    /// Parses an RFC 3339 time, or a date (`2024-05-01`), which means its
    /// midnight in the system's time zone.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let nanos = |t: jiff::Timestamp| i64::try_from(t.as_nanosecond()).ok().map(Timestamp);
        if let Ok(t) = text.parse::<jiff::Timestamp>() {
            return nanos(t);
        }
        let date: jiff::civil::Date = text.parse().ok()?;
        let zoned = date.to_zoned_datetime(jiff::tz::TimeZone::system()).ok()?;
        nanos(zoned.timestamp())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

/// The encoded format of an image file. Persisted as its [code](Self::code).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum ImageFormat {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    WebP,
    /// GIF (the first frame is indexed).
    Gif,
    /// BMP.
    Bmp,
    /// TIFF.
    Tiff,
    /// Anything else (imported vectors, for example).
    Other,
    /// HEIF with HEVC inside: HEIC, every iPhone photo since 2017 (the
    /// primary image is indexed).
    Heif,
    /// AVIF: HEIF with AV1 inside.
    Avif,
}

impl ImageFormat {
    /// Every format.
    pub const ALL: [ImageFormat; 9] = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::Other,
        ImageFormat::Heif,
        ImageFormat::Avif,
    ];

    /// The format's persisted code (store records and index snapshots).
    /// Codes are forever: a new format takes a new code.
    pub const fn code(self) -> u8 {
        match self {
            ImageFormat::Jpeg => 0,
            ImageFormat::Png => 1,
            ImageFormat::WebP => 2,
            ImageFormat::Gif => 3,
            ImageFormat::Bmp => 4,
            ImageFormat::Tiff => 5,
            ImageFormat::Other => 6,
            ImageFormat::Heif => 7,
            ImageFormat::Avif => 8,
        }
    }

    /// The format with this persisted code.
    pub fn from_code(code: u8) -> Option<ImageFormat> {
        ImageFormat::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The lowercase name used on the command line and in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::WebP => "webp",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
            ImageFormat::Other => "other",
            ImageFormat::Heif => "heif",
            ImageFormat::Avif => "avif",
        }
    }

    /// Parses a name (`jpg` is accepted for `jpeg`, `tif` for `tiff`, `heic`
    /// and `hif` for `heif`).
    pub fn from_name(name: &str) -> Option<ImageFormat> {
        let name = name.to_ascii_lowercase();
        Some(match name.as_str() {
            "jpeg" | "jpg" => ImageFormat::Jpeg,
            "png" => ImageFormat::Png,
            "webp" => ImageFormat::WebP,
            "gif" => ImageFormat::Gif,
            "bmp" => ImageFormat::Bmp,
            "tiff" | "tif" => ImageFormat::Tiff,
            "other" => ImageFormat::Other,
            "heif" | "heic" | "hif" => ImageFormat::Heif,
            "avif" => ImageFormat::Avif,
            _ => return None,
        })
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Through serde the format is its code as a u32: the same bytes bincode
// wrote for the derived enum (a varint variant index), so databases of
// format 1 read unchanged, but pinned to the code, not the order.
impl Serialize for ImageFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(u32::from(self.code()))
    }
}

impl<'de> Deserialize<'de> for ImageFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ImageFormat, D::Error> {
        let code = u32::deserialize(d)?;
        u8::try_from(code)
            .ok()
            .and_then(ImageFormat::from_code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown image format code {code}")))
    }
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// NVIDIA CUDA (needs the `onnxruntime-gpu` library, CUDA 13 and cuDNN 9).
    Cuda,
    /// NVIDIA TensorRT, with CUDA for what TensorRT cannot run.
    TensorRt,
    /// CUDA when it starts, else the CPU, saying so in the log and in
    /// [`Encoder::provider`].
    Auto,
}

impl Device {
    /// Parses `cpu`, `cuda`, `tensorrt` or `auto`.
    pub fn from_name(name: &str) -> Option<Device> {
        Some(match name.to_ascii_lowercase().as_str() {
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda,
            "tensorrt" | "trt" => Device::TensorRt,
            "auto" => Device::Auto,
            _ => return None,
        })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::TensorRt => "tensorrt",
            Device::Auto => "auto",
        })
    }
}

/// Which weights of a model run: the full-precision export or one of the
/// smaller variants Hugging Face ONNX repositories ship beside it, named by
/// the suffix of their files (`onnx/vision_model_int8.onnx`, ...). Vectors
/// of two variants are close but not identical. Persisted as its
/// [code](Self::code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ModelVariant {
    /// float32 weights: the reference vectors (the default).
    #[default]
    Fp32,
    /// float16 weights (and usually float16 inputs and outputs): for GPUs.
    Fp16,
    /// Dynamic int8 quantisation of the weights: the fast one on CPUs.
    Int8,
    /// Dynamic uint8 quantisation of the weights.
    Uint8,
    /// Dynamic quantisation as Xenova names it (`_quantized`, uint8 weights).
    Quantized,
    /// 4-bit block quantisation of the MatMul weights.
    Q4,
    /// 4-bit MatMul weights, the rest in float16.
    Q4f16,
}

impl ModelVariant {
    /// Every variant.
    pub const ALL: [ModelVariant; 7] = [
        ModelVariant::Fp32,
        ModelVariant::Fp16,
        ModelVariant::Int8,
        ModelVariant::Uint8,
        ModelVariant::Quantized,
        ModelVariant::Q4,
        ModelVariant::Q4f16,
    ];

    /// The persisted code (the embedding space of a database). Codes are
    /// forever: a new variant takes a new code.
    pub const fn code(self) -> u8 {
        match self {
            ModelVariant::Fp32 => 0,
            ModelVariant::Fp16 => 1,
            ModelVariant::Int8 => 2,
            ModelVariant::Uint8 => 3,
            ModelVariant::Quantized => 4,
            ModelVariant::Q4 => 5,
            ModelVariant::Q4f16 => 6,
        }
    }

    /// The variant with this persisted code.
    pub fn from_code(code: u8) -> Option<ModelVariant> {
        ModelVariant::ALL.into_iter().find(|v| v.code() == code)
    }

    /// The name used on the command line, in the config file and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ModelVariant::Fp32 => "fp32",
            ModelVariant::Fp16 => "fp16",
            ModelVariant::Int8 => "int8",
            ModelVariant::Uint8 => "uint8",
            ModelVariant::Quantized => "quantized",
            ModelVariant::Q4 => "q4",
            ModelVariant::Q4f16 => "q4f16",
        }
    }

    /// Parses a [name](Self::name).
    pub fn from_name(name: &str) -> Option<ModelVariant> {
        let name = name.to_ascii_lowercase();
        ModelVariant::ALL.into_iter().find(|v| v.name() == name)
    }

    /// What the variant's files add to the fp32 file name before `.onnx`:
    /// `""` for fp32, `"_int8"` for int8, and so on.
    pub fn file_suffix(self) -> &'static str {
        match self {
            ModelVariant::Fp32 => "",
            ModelVariant::Fp16 => "_fp16",
            ModelVariant::Int8 => "_int8",
            ModelVariant::Uint8 => "_uint8",
            ModelVariant::Quantized => "_quantized",
            ModelVariant::Q4 => "_q4",
            ModelVariant::Q4f16 => "_q4f16",
        }
    }
}

impl fmt::Display for ModelVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Persisted by code, like `ImageFormat`: pinned to the code, not the order.
impl Serialize for ModelVariant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for ModelVariant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ModelVariant, D::Error> {
        let code = u8::deserialize(d)?;
        ModelVariant::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown model variant code {code}")))
    }
}

/// The variant an encoder is asked to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariantChoice {
    /// Exactly this one; its files must be in the model folder.
    Exact(ModelVariant),
    /// The fast one for the device when the folder has it: int8 (else
    /// `quantized`, else uint8) on the CPU, fp16 on CUDA and TensorRT;
    /// fp32 otherwise.
    Auto,
}

impl Default for VariantChoice {
    /// fp32: the reference vectors.
    fn default() -> VariantChoice {
        VariantChoice::Exact(ModelVariant::Fp32)
    }
}

impl VariantChoice {
    /// Parses a variant [name](ModelVariant::name) or `auto`.
    pub fn from_name(name: &str) -> Option<VariantChoice> {
        if name.eq_ignore_ascii_case("auto") {
            Some(VariantChoice::Auto)
        } else {
            ModelVariant::from_name(name).map(VariantChoice::Exact)
        }
    }
}

impl fmt::Display for VariantChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariantChoice::Exact(variant) => variant.fmt(f),
            VariantChoice::Auto => f.write_str("auto"),
        }
    }
}

/// The layout a model folder was recognised as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// `onnx/vision_model.onnx` + `onnx/text_model.onnx` (Hugging Face / Xenova).
    HuggingFace,
    /// A vision and a text folder, each with `model.onnx` (Qdrant).
    SplitTowers,
    /// `visual/` + `textual/` (Immich).
    Immich,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::HuggingFace => "Hugging Face",
            Layout::SplitTowers => "split towers",
            Layout::Immich => "Immich",
        })
    }
}

/// Where an index keeps the exact vectors it re-ranks with. Chosen when a
/// database is created ([`DbOptions::index_memory`](crate::DbOptions::index_memory))
/// and recorded in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IndexMemory {
    /// Every exact vector in memory: `4·dim` bytes per image beside the
    /// `dim`-byte codes and the links (about 2.8 KB per image at 512-d).
    /// Re-ranking never waits on the disk.
    #[default]
    Resident,
    /// The exact vectors memory-mapped from the index snapshot, only the
    /// codes and links in memory (about 0.75 KB per image at 512-d): for
    /// collections larger than memory would hold resident. Results are the
    /// same as [`Resident`](IndexMemory::Resident)'s; a search whose rows are
    /// not in the page cache reads them from the disk.
    Compact,
}

impl IndexMemory {
    /// The name used in options, the CLI and JSON: `resident` or `compact`.
    pub fn name(self) -> &'static str {
        match self {
            IndexMemory::Resident => "resident",
            IndexMemory::Compact => "compact",
        }
    }

    /// The mode of a [`name`](IndexMemory::name).
    pub fn from_name(name: &str) -> Option<IndexMemory> {
        match name {
            "resident" => Some(IndexMemory::Resident),
            "compact" => Some(IndexMemory::Compact),
            _ => None,
        }
    }

    /// The code the store records (`schema/store.md`, `meta.index_memory`).
    pub(crate) fn code(self) -> u8 {
        match self {
            IndexMemory::Resident => 0,
            IndexMemory::Compact => 1,
        }
    }

    /// The mode of a recorded code.
    pub(crate) fn from_code(code: u8) -> Option<IndexMemory> {
        match code {
            0 => Some(IndexMemory::Resident),
            1 => Some(IndexMemory::Compact),
            _ => None,
        }
    }
}

impl fmt::Display for IndexMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The persisted codes: changing one is a format change.
    #[test]
    fn model_variant_codes_and_names_are_pinned() {
        let pinned = [
            (ModelVariant::Fp32, 0, "fp32", ""),
            (ModelVariant::Fp16, 1, "fp16", "_fp16"),
            (ModelVariant::Int8, 2, "int8", "_int8"),
            (ModelVariant::Uint8, 3, "uint8", "_uint8"),
            (ModelVariant::Quantized, 4, "quantized", "_quantized"),
            (ModelVariant::Q4, 5, "q4", "_q4"),
            (ModelVariant::Q4f16, 6, "q4f16", "_q4f16"),
        ];
        assert_eq!(pinned.len(), ModelVariant::ALL.len());
        for (variant, code, name, suffix) in pinned {
            assert_eq!(variant.code(), code);
            assert_eq!(ModelVariant::from_code(code), Some(variant));
            assert_eq!(ModelVariant::from_name(name), Some(variant));
            assert_eq!(variant.file_suffix(), suffix);
        }
        assert_eq!(ModelVariant::from_code(7), None);
        assert_eq!(VariantChoice::from_name("AUTO"), Some(VariantChoice::Auto));
        assert_eq!(VariantChoice::from_name("int4"), None);
    }

    /// The persisted codes: changing one is a format change.
    #[test]
    fn image_format_codes_are_pinned() {
        let pinned = [
            (ImageFormat::Jpeg, 0),
            (ImageFormat::Png, 1),
            (ImageFormat::WebP, 2),
            (ImageFormat::Gif, 3),
            (ImageFormat::Bmp, 4),
            (ImageFormat::Tiff, 5),
            (ImageFormat::Other, 6),
            (ImageFormat::Heif, 7),
            (ImageFormat::Avif, 8),
        ];
        assert_eq!(pinned.len(), ImageFormat::ALL.len());
        for (format, code) in pinned {
            assert_eq!(format.code(), code, "{format}");
            assert_eq!(ImageFormat::from_code(code), Some(format));
            assert_eq!(ImageFormat::from_name(format.name()), Some(format));
        }
        assert_eq!(ImageFormat::from_code(9), None);
    }

    /// The store's bincode bytes of each domain type, as schema/store.md
    /// documents them.
    #[test]
    fn store_encodings_are_pinned() {
        let config = bincode::config::standard();
        let bytes = |value: &dyn erased::Encode| value.encode(config);
        assert_eq!(bytes(&ImageFormat::Tiff), [5]);
        assert_eq!(bytes(&ImageFormat::Other), [6]);
        assert_eq!(bytes(&ImageId(300)), [251, 44, 1]);
        assert_eq!(bytes(&Timestamp(-1)), [1]);
        assert_eq!(bytes(&ContentHash([7; 32])), [7; 32]);
        let decoded: (ImageFormat, usize) =
            bincode::serde::decode_from_slice(&[4], config).unwrap();
        assert_eq!(decoded.0, ImageFormat::Bmp);
        assert!(bincode::serde::decode_from_slice::<ImageFormat, _>(&[9], config).is_err());
    }

    /// `bincode::serde::encode_to_vec` for values of several types in one list.
    mod erased {
        pub trait Encode {
            fn encode(&self, config: bincode::config::Configuration) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Encode for T {
            fn encode(&self, config: bincode::config::Configuration) -> Vec<u8> {
                bincode::serde::encode_to_vec(self, config).unwrap()
            }
        }
    }

    #[test]
    fn timestamps_parse_and_print_rfc3339() {
        let t = Timestamp::parse("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(t.as_secs(), 1_714_564_800);
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00Z");
        assert!(Timestamp::parse("2024-05-01").is_some());
        assert_eq!(Timestamp::parse("yesterday"), None);
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 0xab, 7]), "00ab07");
    }
}
