-- The analyses table becomes the durable work queue (issue 17). A row is one analysis: hooks
-- queue it, workers (embedded in `serve`, or `neurocds worker` processes) claim it with
-- FOR UPDATE SKIP LOCKED under a lease they renew while working, and finish it.
--
--   queued  → running → done                       (a result; `until_at` says how long it stands)
--   queued  → running → queued (run_after later)    (a failure, retried after a back-off)
--   ...     → dead                                  (failed `attempts` times: the dead letter)
--   running (lease_until passed) → running          (its worker died: another one takes it)
--
-- `job` is the study to analyse as the hook resolved it (UIDs, the ImagingStudy reference and the
-- DICOMweb endpoints it named); never a token. Rows from older builds carry no job: the ones still
-- running or failed are dropped (a cache of work the next hook queues again); finished results stay.
DELETE FROM analyses WHERE state <> 'done';
ALTER TABLE analyses ALTER COLUMN started_at DROP NOT NULL;
ALTER TABLE analyses ADD COLUMN job JSONB;
-- 2: order-sign waiting; 1: order-select warming up; 0: back-fill.
ALTER TABLE analyses ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE analyses ADD COLUMN queued_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE analyses ADD COLUMN run_after TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE analyses ADD COLUMN lease_until TIMESTAMPTZ;
-- One claim's identity: a worker whose lease was taken over can no longer renew or finish it.
ALTER TABLE analyses ADD COLUMN claim UUID;
ALTER TABLE analyses ADD COLUMN worker TEXT;
ALTER TABLE analyses ADD COLUMN last_error TEXT;
ALTER TABLE analyses ADD CONSTRAINT analyses_state CHECK (state IN ('queued', 'running', 'done', 'dead'));

CREATE INDEX analyses_ready ON analyses (priority DESC, queued_at) WHERE state = 'queued';
CREATE INDEX analyses_leases ON analyses (lease_until) WHERE state = 'running';
CREATE INDEX analyses_dead ON analyses (finished_at DESC) WHERE state = 'dead';
