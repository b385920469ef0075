//! Wake-ups: "a job was queued" (for workers) and "this job finished" (for waiting hooks).
//!
//! Within a process they travel on a broadcast channel; between processes, by PostgreSQL
//! `LISTEN`/`NOTIFY` on the channels [`QUEUED`] and [`FINISHED`]. One connection per process
//! listens ([`Events::listen`]), outside the pool, and reconnects with a back-off when the
//! database goes away. A wake-up is only a hint: whoever gets one reads the table, and whoever
//! misses one still looks every `worker.poll_ms`.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use tokio::sync::broadcast;

/// The channel on which queuing a job is announced (empty payload).
pub const QUEUED: &str = "neurocds_queued";
/// The channel on which a finished job is announced (payload: the key's digest).
pub const FINISHED: &str = "neurocds_finished";

/// How long the listening connection may stay silent before it is checked.
const QUIET: Duration = Duration::from_secs(30);

/// A wake-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Queued,
    /// A job finished (done, failed for now, or dead); [`super::AnalysisKey::digest`].
    Finished(String),
}

/// This process's wake-ups. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Tells this process's listeners at once (other processes learn through `NOTIFY`).
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// Relays `NOTIFY`s from PostgreSQL at `url` to this process's listeners until the process
    /// ends. Spawn it on the main runtime.
    pub async fn listen(self, url: String) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let (why, listened) = self.relay(&url).await;
            if listened {
                backoff = Duration::from_millis(250);
            }
            tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "queue wake-ups: no listening connection; workers and hooks poll meanwhile");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// One listening connection's life: returns why it ended, and whether it got as far as
    /// listening (a connection that did resets the back-off).
    async fn relay(&self, url: &str) -> (String, bool) {
        let mut conn = match AsyncPgConnection::establish(url).await {
            Ok(c) => c,
            Err(e) => return (e.to_string(), false),
        };
        if let Err(e) = conn.batch_execute(&format!("LISTEN {QUEUED}; LISTEN {FINISHED}")).await {
            return (e.to_string(), false);
        }
        tracing::debug!("queue wake-ups: listening");
        // Anything that happened while no connection listened: everyone looks once.
        self.publish(Event::Queued);
        loop {
            let next = {
                let mut stream = std::pin::pin!(conn.notifications_stream());
                tokio::time::timeout(QUIET, stream.next()).await
            };
            match next {
                Ok(Some(Ok(n))) if n.channel == QUEUED => self.publish(Event::Queued),
                Ok(Some(Ok(n))) if n.channel == FINISHED => self.publish(Event::Finished(n.payload)),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return (e.to_string(), true),
                Ok(None) => return ("the connection closed".into(), true),
                // Quiet for a while: make sure the connection is still there.
                Err(_) => {
                    if let Err(e) = conn.batch_execute("SELECT 1").await {
                        return (e.to_string(), true);
                    }
                }
            }
        }
    }
}
