DO $$
BEGIN
    ALTER TABLE decisions ALTER COLUMN report SET COMPRESSION default;
    ALTER TABLE decisions ALTER COLUMN series SET COMPRESSION default;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    NULL;
END $$;
