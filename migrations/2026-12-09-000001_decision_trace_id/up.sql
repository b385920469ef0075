-- The OpenTelemetry trace id of the hook a decision answered (issue 19): the case report, the
-- log lines and the trace of one hook name the same id. Part of the row's chained content when
-- present; rows recorded before it have none and keep their hashes.
ALTER TABLE decisions ADD COLUMN trace_id TEXT CHECK (trace_id ~ '^[0-9a-f]{32}$');
