//! The token replay check that replicas share.
//!
//! Each process remembers the `jti` of every token it accepted (`cds::auth`), which stops a
//! replay to the same process. With `trust.shared_replay_check` on, accepted ids are also
//! recorded here, so a token captured on its way to one replica and sent to another is refused
//! too, at the price of one small write per request.

use std::sync::atomic::{AtomicU64, Ordering};

use diesel::sql_types::{Double, Text};
use diesel_async::RunQueryDsl;

use super::{AuditError, Database};

/// Expired ids are swept on the first record and then once every this many.
const SWEEP_EVERY: u64 = 1000;
static RECORDED: AtomicU64 = AtomicU64::new(0);

impl Database {
    /// Records that the token `(iss, jti)` was accepted, to be remembered until `forget_after`
    /// (Unix seconds). `Ok(false)` when a live record exists already: the token is a replay,
    /// to this replica or another.
    pub async fn first_use_of_token(&self, iss: &str, jti: &str, forget_after: i64) -> Result<bool, AuditError> {
        let mut conn = self.conn().await?;
        // A record whose token has expired may be taken over (clocks of replicas differ a little).
        let recorded = diesel::sql_query(
            "INSERT INTO seen_tokens (iss, jti, forget_after) VALUES ($1, $2, to_timestamp($3)) \
             ON CONFLICT (iss, jti) DO UPDATE SET forget_after = EXCLUDED.forget_after \
             WHERE seen_tokens.forget_after < now()",
        )
        .bind::<Text, _>(iss)
        .bind::<Text, _>(jti)
        .bind::<Double, _>(forget_after as f64)
        .execute(&mut conn)
        .await
        .map_err(AuditError::query("recording an accepted token id"))?;
        if RECORDED.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == 0 {
            diesel::sql_query("DELETE FROM seen_tokens WHERE forget_after < now()")
                .execute(&mut conn)
                .await
                .map_err(AuditError::query("sweeping expired token ids"))?;
        }
        Ok(recorded == 1)
    }
}
