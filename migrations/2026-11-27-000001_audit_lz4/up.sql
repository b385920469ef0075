-- Compress the large JSONB columns of the decision log with LZ4 instead of pglz.
--
-- Each decision stores its DiagnosticReport bundle (~9 KB of JSON), which PostgreSQL compresses
-- when it moves it out of line. With pglz that compression was a quarter of the database's CPU per
-- appended decision under load; LZ4 does the same job several times faster. This changes how
-- new values are stored, never what they are: hashes, queries and `audit verify` are unaffected,
-- and old rows keep their pglz storage. On a server built without LZ4 (or before PostgreSQL 14)
-- the columns keep the default and the migration says so.
DO $$
BEGIN
    ALTER TABLE decisions ALTER COLUMN report SET COMPRESSION lz4;
    ALTER TABLE decisions ALTER COLUMN series SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'decisions.report keeps the default TOAST compression: %', SQLERRM;
END $$;
