-- Decisions recorded with a content lose it: only for a database that never served.
REVOKE ALL ON decision_contents FROM neurocds_service;
ALTER TABLE decisions DISABLE TRIGGER decisions_append_only;
ALTER TABLE decisions DROP COLUMN content_sha256;
ALTER TABLE decisions ENABLE TRIGGER decisions_append_only;
DROP TABLE decision_contents;
