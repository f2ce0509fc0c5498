//! `GET /v1/events`: the indexer's progress as server-sent events, one
//! `state::Progress` as JSON per event's `data`, and a keep-alive comment
//! every 15 s; the stream ends when the daemon stops. A client too slow for the feed misses messages (the
//! broadcast channel drops the oldest); it never holds the indexer back.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use crate::state::AppState;

/// The time between keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events`.
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut stopping = state.stopping.clone();
    let stream = BroadcastStream::new(state.progress.subscribe())
        .filter_map(|message| async {
            // A lagging receiver's error says how many it missed: nothing to send.
            let progress = message.ok()?;
            Event::default().json_data(&progress).ok().map(Ok)
        })
        .take_until(async move {
            // A dropped sender (no daemon around the router, as in tests)
            // never says stop.
            if stopping.wait_for(|stopping| *stopping).await.is_err() {
                std::future::pending::<()>().await;
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}
