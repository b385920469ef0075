//! The durable work queue: one PostgreSQL row per analysis, claimed by workers under a lease.
//!
//! Hooks [`Queue::enqueue`] the analysis of a study; workers (the one embedded in `serve`, and
//! any `neurocds worker` process on another machine) [`Queue::claim`] the most urgent ready job
//! with `FOR UPDATE SKIP LOCKED`, [`Queue::renew`] their lease while they work, and
//! [`Queue::finish`] it. Nothing about a queued analysis lives only in one process's memory:
//! kill any process and the row is still there.
//!
//! - **Once per key.** The key binds a result to who asked (issuer and tenant), the study and
//!   where its pixels come from ([`AnalysisKey`]): concurrent hooks on any replica queue one job,
//!   and what one caller's prefetch pointed at never decides another caller's answer.
//! - **Leases.** A claim holds the job until `lease_until`; its worker renews it every third of
//!   the lease. When a worker dies, the lease runs out and another worker takes the job over,
//!   counting the lost run as an attempt (a study that kills every worker that opens it is
//!   dead-lettered, not retried forever). Each claim has its own id: a worker whose job was taken
//!   over can neither renew nor finish it.
//! - **Retries, then the dead letter.** A failure (PACS down, time-out, the ensemble failing) is
//!   queued again after a back-off that doubles with each attempt; after `worker.max_attempts`
//!   the job is `dead`, with its last error, listed by [`Queue::dead_letters`] (the queue page and
//!   the compliance API). Meanwhile hooks get the failure at once, and a hook asking again after
//!   `hooks.retry_max_s` queues it afresh.
//! - **Priorities.** order-sign waiting ([`Priority::Waiting`]) > order-select warming up >
//!   back-fill; a hook that needs a queued job sooner raises its priority. Back-fill may fill
//!   half the queue's bound (`hooks.max_pending_analyses`) at most, so hooks always find room.
//! - **Wake-ups.** Queuing and finishing `NOTIFY` (in the same transaction, so a wake-up never
//!   precedes the row); workers and waiting hooks listen ([`events`]) and also look every
//!   `worker.poll_ms`, so a lost connection delays them but never strands them.
//!
//! This module knows SQL and the job's life; it does not know imaging, HTTP or cards.

pub mod events;
mod job;
mod store;

pub use events::{Event, Events};
pub use job::{AnalysisKey, Claimed, DeadLetter, Depth, Finality, Priority, Status};
pub use store::Queue;
