//! The imgdb daemon: keeps a database equal to watched folders by itself
//! and serves search over HTTP, with a web page.
//!
//! ```text
//!  notify (debounced) ──▶ watcher ──enqueue──▶ queue (sled, durable)
//!  root monitor ────────────┘                        │
//!                                                    ▼
//!  HTTP (axum) ◀── AppState ──▶ indexer thread: Db::apply_events in
//!   /v1/…, /                    batches, niced below queries, dequeues
//!                               only what it applied
//! ```
//!
//! - `watcher` turns file system events into `imgdb::ingest::FileEvent`s
//!   and watches the roots themselves (gone, back, unwatchable);
//! - `indexer` applies queued events with the library's ingest pipeline;
//! - `api` answers HTTP requests on the shared [`state::AppState`];
//! - `address` leaves the daemon's address in the database folder, where
//!   the CLI finds it, and `client` is the CLI's blocking client of the API.

pub mod address;
pub mod api;
pub mod client;
pub mod config;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod indexer;
pub mod json;
mod roots;
mod serve;
pub mod state;
mod watcher;
mod web;

pub use config::Config;
pub use error::DaemonError;
pub use serve::run;
