//! Running the daemon: open the database and the model, start the
//! watcher and the indexer, serve HTTP until SIGTERM or SIGINT, then shut
//! down gracefully (the batch in flight finishes, the store is flushed and
//! the index snapshotted).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use imgdb::{CancelToken, Db, Encoder, EncoderOptions, Towers, VariantChoice, resolve};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::address::{self, Address};
use crate::config::Config;
use crate::error::DaemonError;
use crate::state::{AppState, Status};
use crate::{api, indexer, roots, watcher};

/// Runs the daemon until a signal; see the module documentation.
pub fn run(config: Config) -> Result<(), DaemonError> {
    config.validate()?;
    let db_path = resolve::database_path(config.db.as_deref());
    let model = resolve::model_folder(config.model.as_deref())?;
    let options = resolve::encoder_options(
        resolve::device(config.device.as_deref())?,
        resolve::variant(config.model_variant.as_deref())?,
    );
    let encoder = Encoder::load(&model, &options)?;
    let db = Db::options()
        .space(encoder.space().clone())
        .accept_variants(config.accept_variant)
        .create_if_missing(true)
        .open(&db_path)?;
    for folder in &config.watch {
        let canonical = folder.canonicalize().map_err(|source| DaemonError::Root {
            path: folder.clone(),
            source,
        })?;
        let device = roots::device_of(&canonical).ok_or_else(|| DaemonError::Root {
            path: folder.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        })?;
        db.watch_root(&canonical, device)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("imgdb-http")
        .build()
        .map_err(|source| DaemonError::Serve {
            listen: config.listen,
            source,
        })?;
    let (wake_tx, wake) = crossbeam_channel::bounded(1);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let state = AppState {
        thumbnails: db_path.join("cache").join("thumbnails"),
        db: db.clone(),
        encoder,
        config: Arc::new(config),
        status: Arc::new(Status::default()),
        progress: broadcast::channel(1024).0,
        wake: wake_tx,
        started: Instant::now(),
        stopping,
    };
    let served = runtime.block_on(serve(
        state.clone(),
        db_path.clone(),
        model,
        options,
        wake,
        stop,
    ));
    address::remove_own(&db_path);
    drop(state);
    let closed = db.close();
    served?;
    closed?;
    info!("stopped");
    Ok(())
}

async fn serve(
    state: AppState,
    db_path: PathBuf,
    model: PathBuf,
    options: EncoderOptions,
    wake: crossbeam_channel::Receiver<()>,
    stop: tokio::sync::watch::Sender<bool>,
) -> Result<(), DaemonError> {
    let listen = state.config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DaemonError::Serve { listen, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| DaemonError::Serve { listen, source })?;
    let cancel = CancelToken::new();
    let (stop_watcher, watcher_stop) = crossbeam_channel::bounded::<()>(1);
    let watcher = spawn("imgdb-watcher", {
        let state = state.clone();
        move || watcher::run(state, watcher_stop)
    });
    let indexer = spawn("imgdb-indexer", {
        let state = state.clone();
        let cancel = cancel.clone();
        move || {
            indexer::lower_priority(state.config.indexing.nice);
            // Loaded here, so that ONNX Runtime's threads inherit the nice
            // value; the image tower only.
            let options = EncoderOptions {
                towers: Towers::Image,
                // What the query encoder resolved `auto` to: the indexer's
                // vectors must be of its space.
                device: state.encoder.provider().device,
                variant: VariantChoice::Exact(state.encoder.space().variant),
                ..options
            };
            match Encoder::load(&model, &options) {
                Ok(encoder) => indexer::run(state, encoder, wake, cancel),
                Err(error) => {
                    let message = indexer::error_chain(&error);
                    warn!("the indexer cannot load the model, nothing is indexed: {message}");
                    state.status.lock().last_error = Some(message);
                }
            }
        }
    });
    let address = Address::of_this_process(bound, state.config.token.clone());
    address
        .write(&db_path)
        .map_err(|source| DaemonError::AddressFile {
            path: db_path.join(address::ADDRESS_FILE),
            source,
        })?;
    // The one line a person starting it by hand needs, whatever the log level.
    eprintln!("imgdb daemon: listening on {}", address.url);
    let wake = state.wake.clone();
    let served = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await
        .map_err(|source| DaemonError::Serve { listen, source });
    info!("stopping: finishing the batch in flight");
    cancel.cancel();
    let _ = wake.try_send(());
    let _ = stop_watcher.send(());
    for thread in [indexer, watcher] {
        if thread.join().is_err() {
            warn!("a daemon thread panicked while stopping");
        }
    }
    served
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .expect("the OS starts a thread")
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
