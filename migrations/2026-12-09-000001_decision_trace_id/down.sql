ALTER TABLE decisions DROP COLUMN trace_id;
