-- What a decision shares with every other decision on the same analysis — the series it used,
-- the scope gate's candidates, the FHIR report before its per-decision identifiers — stored
-- once, under the SHA-256 of its canonical JSON, instead of copied into every decision row.
--
-- A decision row names its content by hash (`content_sha256`), and that column is part of the
-- row's chained content: changing a content breaks its own hash (checked by `audit verify`),
-- and pointing a decision at another content breaks the chain. Contents, like the logs, are
-- never updated or deleted.
CREATE TABLE decision_contents (
    content_sha256 TEXT PRIMARY KEY CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    content JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
DO $$
BEGIN
    ALTER TABLE decision_contents ALTER COLUMN content SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'decision_contents.content keeps the default TOAST compression: %', SQLERRM;
END $$;

CREATE TRIGGER decision_contents_append_only BEFORE UPDATE OR DELETE ON decision_contents
    FOR EACH ROW EXECUTE FUNCTION neurocds_refuse_change();
CREATE TRIGGER decision_contents_no_truncate BEFORE TRUNCATE ON decision_contents
    FOR EACH STATEMENT EXECUTE FUNCTION neurocds_refuse_change();

ALTER TABLE decisions ADD COLUMN content_sha256 TEXT REFERENCES decision_contents (content_sha256);

GRANT SELECT, INSERT ON decision_contents TO neurocds_service;
