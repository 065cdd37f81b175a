//! Work that must not run on an async worker (tokenizing, rendering a chat template) moved to
//! tokio's blocking pool, so that a long prompt never holds a worker that other requests need.

use crate::EngineError;

/// Runs `work` on the blocking pool; a panic in it is an internal failure of the request.
pub(crate) async fn off_async_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        EngineError::TaskFailed(if error.is_panic() {
            "panicked"
        } else {
            "was cancelled"
        })
    })?
}
