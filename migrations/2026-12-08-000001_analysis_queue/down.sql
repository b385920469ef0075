DROP INDEX analyses_dead;
DROP INDEX analyses_leases;
DROP INDEX analyses_ready;
ALTER TABLE analyses DROP CONSTRAINT analyses_state;
DELETE FROM analyses WHERE state <> 'done';
ALTER TABLE analyses DROP COLUMN last_error, DROP COLUMN worker, DROP COLUMN claim, DROP COLUMN lease_until,
    DROP COLUMN run_after, DROP COLUMN queued_at, DROP COLUMN priority, DROP COLUMN job;
ALTER TABLE analyses ALTER COLUMN started_at SET NOT NULL;
