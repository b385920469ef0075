//! Reading an answer's body with a ceiling.
//!
//! Every peer's answer is read through [`read_capped`]: a declared `Content-Length` over the
//! limit is refused before a byte is read, and a body without one (chunked, or lying) is refused
//! as soon as what has arrived passes the limit. Memory reserved up front is bounded too, so a
//! peer cannot make the service allocate by announcing a large body it never sends.

/// Memory reserved before the first chunk, at most (the rest grows with what arrives).
const MAX_RESERVE: u64 = 1 << 20;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the answer failed: {0}")]
    Transport(#[source] reqwest::Error),
}

/// Reads `response`'s body whole, refusing it past `limit` bytes.
pub async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length();
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(MAX_RESERVE) as usize);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
