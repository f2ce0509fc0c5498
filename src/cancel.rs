//! [`CancelToken`]: a cheap, cloneable flag that asks a long operation
//! (ingest, reindex, export) to stop at its next safe point.
//!
//! Whatever an operation has committed before it notices the token stays
//! committed; it returns normally and says in its report that it stopped
//! early. The token never interrupts a store commit half-way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Asks long operations to stop. Clones share one flag; `Send + Sync`.
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every operation holding a clone to stop; returns whether it was
    /// already cancelled (a second Ctrl-C, say).
    pub fn cancel(&self) -> bool {
        self.flag.swap(true, Ordering::SeqCst)
    }

    /// Whether [`cancel`](Self::cancel) was called on any clone.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let token = CancelToken::new();
        let other = token.clone();
        assert!(!other.is_cancelled());
        assert!(!token.cancel());
        assert!(other.is_cancelled());
        assert!(other.cancel());
    }
}
