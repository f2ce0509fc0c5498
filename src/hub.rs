//! `imgdb model pull`: fetching a model folder from the Hugging Face hub
//! (`hf-hub`, honouring `HF_ENDPOINT`) into the model cache, and checking
//! every file against the checksum the hub names it by.
//!
//! hf-hub stores each file as `blobs/<etag>` and links it from
//! `snapshots/<commit>/<name>`: for files kept in Git LFS (the ONNX models)
//! the etag is the SHA-256 of the content, for the others it is Git's blob
//! SHA-1. A file whose content does not match is deleted and refused.

use std::path::{Path, PathBuf};

use hf_hub::api::Progress;
use hf_hub::api::sync::ApiBuilder;
use sha1::Digest as _;

use crate::error::{Error, HubError, Result};
use crate::types::{ModelVariant, hex};

/// The model pulled when none is named: OpenAI's CLIP ViT-B/32 in the
/// Hugging Face layout, exported to ONNX by Xenova.
pub const DEFAULT_MODEL: &str = "Xenova/clip-vit-base-patch32";

/// The towers of the Hugging Face layout, as the fp32 files are named
/// (variants add their suffix before `.onnx`).
const TOWERS: [&str; 2] = ["onnx/vision_model", "onnx/text_model"];
/// The other files every model folder needs (`schema/model.md`).
const REQUIRED: [&str; 2] = ["preprocessor_config.json", "tokenizer.json"];
/// Files fetched when the repository has them.
const OPTIONAL: [&str; 3] = [
    "config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The folder of a model already pulled into `cache`, if any.
pub fn cached_model(cache: &Path, repo: &str) -> Option<PathBuf> {
    let repo_cache = hf_hub::Cache::new(cache.to_path_buf()).model(repo.to_string());
    let file = repo_cache.get(REQUIRED[0])?;
    file.parent().map(Path::to_path_buf)
}

/// Downloads `repo` (`owner/name`) into `cache` with the towers of
/// `variant` (the fp32 ones only for fp32: a variant is pulled to save its
/// size) and returns the model folder. Pulling another variant later adds
/// its towers to the same folder. `progress` is cloned for each file.
pub fn pull_model<P: Progress + Clone>(
    repo: &str,
    cache: &Path,
    variant: ModelVariant,
    progress: P,
) -> Result<PathBuf> {
    let hub_err = |file: &str| {
        let repo = repo.to_string();
        let file = file.to_string();
        move |source: hf_hub::api::sync::ApiError| HubError::Download {
            repo,
            file,
            source: Box::new(source),
        }
    };
    let mut builder = ApiBuilder::new()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(false);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder.build().map_err(hub_err(""))?;
    let model = api.model(repo.to_string());
    let towers = TOWERS.map(|tower| format!("{tower}{}.onnx", variant.file_suffix()));
    let mut folder = None;
    for file in REQUIRED
        .iter()
        .copied()
        .chain(towers.iter().map(String::as_str))
    {
        let path = model
            .download_with_progress(file, progress.clone())
            .map_err(hub_err(file))?;
        verify(&path, repo, file)?;
        folder.get_or_insert_with(|| snapshot_folder(&path, file));
    }
    for file in OPTIONAL {
        // Absent files are fine; anything else is not.
        match model.download_with_progress(file, progress.clone()) {
            Ok(path) => verify(&path, repo, file)?,
            Err(hf_hub::api::sync::ApiError::RequestError(e))
                if matches!(*e, ureq::Error::Status(404, _)) => {}
            Err(e) => return Err(hub_err(file)(e).into()),
        }
    }
    Ok(folder.expect("at least one required file"))
}

/// The snapshot folder that holds `file` (which may be in a subfolder).
fn snapshot_folder(path: &Path, file: &str) -> PathBuf {
    let depth = Path::new(file).components().count();
    path.ancestors()
        .nth(depth)
        .expect("inside the snapshot")
        .to_path_buf()
}

/// Checks a downloaded file against its blob name (SHA-256 for LFS files,
/// Git's blob SHA-1 for the rest); deletes it when it does not match.
fn verify(path: &Path, repo: &str, file: &str) -> Result<()> {
    let blob = std::fs::canonicalize(path).map_err(Error::io(path))?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let content = std::fs::read(&blob).map_err(Error::io(&blob))?;
    let actual = match etag.len() {
        64 => hex(&sha2::Sha256::digest(&content)),
        40 => {
            let mut hasher = sha1::Sha1::new();
            hasher.update(format!("blob {}\0", content.len()).as_bytes());
            hasher.update(&content);
            hex(&hasher.finalize())
        }
        _ => {
            return Err(HubError::Checksum {
                repo: repo.to_string(),
                file: file.to_string(),
                expected: etag,
                actual: "no checksum the hub names files by".into(),
            }
            .into());
        }
    };
    if actual != etag {
        let _ = std::fs::remove_file(&blob);
        let _ = std::fs::remove_file(path);
        return Err(HubError::Checksum {
            repo: repo.to_string(),
            file: file.to_string(),
            expected: etag,
            actual,
        }
        .into());
    }
    Ok(())
}
