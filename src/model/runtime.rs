//! Finding and loading the ONNX Runtime shared library.
//!
//! ort's `load-dynamic` feature loads `libonnxruntime` at run time, so no
//! build step downloads a binary. The library comes from the `onnxruntime`
//! (CPU) or `onnxruntime-gpu` wheel on PyPI: `scripts/fetch-onnxruntime.sh`
//! puts it in a project-local cache. Places are tried in this order, and when
//! none has it the error lists each one with what was wrong there:
//!
//! 1. `ORT_DYLIB_PATH` (a file);
//! 2. the path given in [`EncoderOptions`](crate::EncoderOptions) (the config);
//! 3. the project cache, `.cache/onnxruntime*/` beside this crate's manifest,
//!    and the user cache `crate::paths::cache_dir()` (`$IMGDB_CACHE`, else
//!    `$XDG_CACHE_HOME/imgdb`), each searched for `onnxruntime*/`;
//! 4. an `onnxruntime` package importable by `python3` (CPU or GPU build).
//!
//! The library is loaded once per process (ort keeps it globally), with
//! [`ort::init_from`], which returns an error instead of panicking on a bad
//! file as the environment-variable path does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use tracing::info;

use crate::error::{ModelError, Result, SearchedPlace, SearchedPlaces};

/// The ONNX Runtime release this build is made for: ort 2.0.0-rc.15's
/// `api-31` refuses older libraries (1.30 was checked) and loads 1.31.x.
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// The library's file name inside the wheel (`onnxruntime/capi/`); there is
/// no unversioned name.
pub const ONNXRUNTIME_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// The command that installs the library where it is found automatically.
pub const FETCH_COMMAND: &str =
    "scripts/fetch-onnxruntime.sh  (or: pip install onnxruntime==1.31.1)";

/// The loaded runtime: its path and ort environment.
#[derive(Clone)]
pub(crate) struct Runtime {
    pub path: PathBuf,
    pub environment: ort::environment::Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serialises first loads (ort's own global takes the first library only).
static LOADING: Mutex<()> = Mutex::new(());

/// The runtime, loading it on first use from the first place that has it.
pub(crate) fn runtime(configured: Option<&Path>) -> Result<Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let _loading = LOADING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let path = locate(configured)?;
    let builder = ort::init_from(&path).map_err(|source| ModelError::RuntimeLoad {
        path: path.clone(),
        source,
    })?;
    let environment = builder
        .with_name("imgdb")
        .build()
        .map_err(|source| ModelError::Onnx {
            path: path.clone(),
            source,
        })?;
    info!("loaded ONNX Runtime from {}", path.display());
    Ok(RUNTIME
        .get_or_init(|| Runtime { path, environment })
        .clone())
}

/// Finds the library, or says everywhere it looked.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf> {
    let mut searched = Vec::new();
    let mut check = |place: String, path: Option<PathBuf>| -> Option<PathBuf> {
        match path {
            Some(path) if path.is_file() => Some(path),
            Some(path) => {
                searched.push(SearchedPlace {
                    place,
                    outcome: format!("{} does not exist", path.display()),
                });
                None
            }
            None => {
                searched.push(SearchedPlace {
                    place,
                    outcome: "not set".into(),
                });
                None
            }
        }
    };
    if let Some(found) = check(
        "ORT_DYLIB_PATH".into(),
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
    ) {
        return Ok(found);
    }
    if let Some(found) = check(
        "the configured runtime path".into(),
        configured.map(Path::to_path_buf),
    ) {
        return Ok(found);
    }
    for cache in cache_dirs() {
        match find_in_cache(&cache) {
            Some(found) => return Ok(found),
            None => searched.push(SearchedPlace {
                place: cache.display().to_string(),
                outcome: format!("no onnxruntime*/**/{ONNXRUNTIME_LIBRARY}"),
            }),
        }
    }
    match python_package() {
        Ok(found) => return Ok(found),
        Err(outcome) => searched.push(SearchedPlace {
            place: "python3 -c 'import onnxruntime'".into(),
            outcome,
        }),
    }
    Err(ModelError::RuntimeNotFound {
        version: ONNXRUNTIME_VERSION,
        searched: SearchedPlaces(searched),
        fix: FETCH_COMMAND,
    }
    .into())
}

/// The project cache beside this crate's manifest, then the user cache.
fn cache_dirs() -> Vec<PathBuf> {
    vec![
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"),
        crate::paths::cache_dir(),
    ]
}

/// `<cache>/onnxruntime*/…/onnxruntime/capi/<library>`, preferring a GPU
/// build (`onnxruntime-gpu*`) when both are there.
fn find_in_cache(cache: &Path) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("onnxruntime"))
        })
        .collect();
    roots.sort_by_key(|p| !p.to_string_lossy().contains("gpu"));
    roots.into_iter().find_map(|root| {
        walkdir::WalkDir::new(root)
            .max_depth(8)
            .into_iter()
            .filter_map(|e| e.ok())
            .find(|e| {
                e.file_name() == ONNXRUNTIME_LIBRARY
                    && e.path().parent().is_some_and(|p| p.ends_with("capi"))
            })
            .map(|e| e.into_path())
    })
}

/// The library inside an installed `onnxruntime` Python package.
fn python_package() -> std::result::Result<PathBuf, String> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .map_err(|e| format!("python3 did not run: {e}"))?;
    if !output.status.success() {
        return Err("no onnxruntime package".into());
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("capi");
    let path = dir.join(ONNXRUNTIME_LIBRARY);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} has no {ONNXRUNTIME_LIBRARY} (another onnxruntime version?)",
            dir.display()
        ))
    }
}
