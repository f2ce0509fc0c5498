//! Where things are when the caller does not say: the database folder, the
//! model folder, the caches, the execution device and the model variant.
//!
//! This is policy that every front end shares (the CLI, the daemon, an app
//! that wants imgdb's defaults), so it lives here and not in a binary. Each
//! function takes what the caller was given explicitly and falls back to the
//! environment, then to the XDG base directories.

use std::path::{Path, PathBuf};

use crate::error::{Error, ModelError, Result};
use crate::model::{Device, EncoderOptions, VariantChoice};
pub use crate::paths::{CACHE_ENV, cache_dir};
use crate::paths::{env_path, home};

/// Names the database folder when none is given.
pub const DB_ENV: &str = "IMGDB_DB";
/// Names the model folder when none is given.
pub const MODEL_ENV: &str = "IMGDB_MODEL";
/// Names the device (`cpu`, `cuda`, `tensorrt`, `auto`) when none is given.
pub const DEVICE_ENV: &str = "IMGDB_DEVICE";
/// Names the model variant (`fp32`, `fp16`, `int8`, ..., `auto`) when none
/// is given.
pub const VARIANT_ENV: &str = "IMGDB_MODEL_VARIANT";

/// The database folder: `explicit`, else `$IMGDB_DB`, else
/// `$XDG_DATA_HOME/imgdb/db` (`~/.local/share/imgdb/db`).
pub fn database_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    env_path(DB_ENV).unwrap_or_else(|| {
        env_path("XDG_DATA_HOME")
            .or_else(|| home().map(|h| h.join(".local").join("share")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("imgdb")
            .join("db")
    })
}

/// Where pulled models are kept: `models/` in the [cache](cache_dir).
pub fn model_cache() -> PathBuf {
    cache_dir().join("models")
}

/// The model folder: `explicit`, else `$IMGDB_MODEL`, else the default
/// model when it was pulled into the [model cache](model_cache) (needs the
/// `hub` feature). Fails with [`ModelError::NoModel`] when there is none.
pub fn model_folder(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env_path(MODEL_ENV) {
        return Ok(path);
    }
    #[cfg(feature = "hub")]
    if let Some(path) = crate::hub::cached_model(&model_cache(), crate::hub::DEFAULT_MODEL) {
        return Ok(path);
    }
    Err(ModelError::NoModel {
        cache: model_cache(),
    }
    .into())
}

/// The device: `explicit`, else `$IMGDB_DEVICE`, else the CPU.
pub fn device(explicit: Option<&str>) -> Result<Device> {
    setting(
        explicit,
        DEVICE_ENV,
        Device::from_name,
        "device",
        "cpu, cuda, tensorrt or auto",
    )
    .map(|device| device.unwrap_or(Device::Cpu))
}

/// The model variant: `explicit`, else `$IMGDB_MODEL_VARIANT`, else fp32.
pub fn variant(explicit: Option<&str>) -> Result<VariantChoice> {
    setting(
        explicit,
        VARIANT_ENV,
        VariantChoice::from_name,
        "model variant",
        "fp32, fp16, int8, uint8, quantized, q4, q4f16 or auto",
    )
    .map(Option::unwrap_or_default)
}

/// A named setting: `explicit`, else the variable `env` when set and not
/// empty, parsed; `None` when neither says.
fn setting<T>(
    explicit: Option<&str>,
    env: &str,
    parse: fn(&str) -> Option<T>,
    name: &'static str,
    expected: &'static str,
) -> Result<Option<T>> {
    let value = match explicit {
        Some(value) => value.to_string(),
        None => match std::env::var(env) {
            Ok(value) if !value.is_empty() => value,
            _ => return Ok(None),
        },
    };
    parse(&value).map(Some).ok_or(Error::InvalidParameter {
        name,
        value,
        expected,
    })
}

/// Encoder options for `device` and `variant` with the shared caches:
/// TensorRT engines and model-file digests under the [cache](cache_dir).
pub fn encoder_options(device: Device, variant: VariantChoice) -> EncoderOptions {
    EncoderOptions {
        device,
        variant,
        tensorrt_cache: Some(cache_dir().join("tensorrt")),
        digest_cache: Some(cache_dir().join("digests")),
        ..EncoderOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_win() {
        assert_eq!(
            database_path(Some(Path::new("/x/db"))),
            PathBuf::from("/x/db")
        );
        assert_eq!(
            model_folder(Some(Path::new("/x/model"))).unwrap(),
            PathBuf::from("/x/model")
        );
        assert_eq!(device(Some("cuda")).unwrap(), Device::Cuda);
        assert!(matches!(
            device(Some("tpu")),
            Err(Error::InvalidParameter { name: "device", .. })
        ));
        assert_eq!(variant(Some("auto")).unwrap(), VariantChoice::Auto);
        assert!(matches!(
            variant(Some("int4")),
            Err(Error::InvalidParameter {
                name: "model variant",
                ..
            })
        ));
    }
}
