//! Keeping CPU-heavy parsing of outside input off the async runtime.
//!
//! A hook's tasks share a few runtime threads with every other hook in flight; parsing a
//! multi-megabyte hook request, FHIR Bundle or DICOM JSON answer on one of them stalls the
//! others for as long as it takes. Small bodies are parsed where they are (a hand-off costs more
//! than the parse); large ones go to the blocking pool.

/// Bodies up to this size are parsed on the calling task.
const INLINE_MAX_BYTES: usize = 256 * 1024;

/// The parsing task ended without an answer (the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("parsing stopped before it finished")]
pub struct Stopped;

/// `parse(body)`, on the blocking pool when `body` is large.
pub async fn parse_off_runtime<B, T>(body: B, parse: impl FnOnce(&[u8]) -> T + Send + 'static) -> Result<T, Stopped>
where
    B: AsRef<[u8]> + Send + 'static,
    T: Send + 'static,
{
    if body.as_ref().len() <= INLINE_MAX_BYTES {
        return Ok(parse(body.as_ref()));
    }
    tokio::task::spawn_blocking(move || parse(body.as_ref())).await.map_err(|_| Stopped)
}
