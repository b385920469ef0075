-- The service's role: it appends to the decision and feedback logs and reads them, and keeps
-- its working tables (analyses, seen_tokens). It can never change or remove a log row,
-- truncate a table, drop it or disable its triggers: those need the owner, and the owner is
-- the role migrations run as (database.migrate_url), not the one the service connects as.
--
-- A site creates a login role for the service and grants it this one:
--   CREATE ROLE neurocds_app LOGIN PASSWORD '...' IN ROLE neurocds_service;
-- Every later migration that adds a table grants neurocds_service what it needs there.
DO $$
BEGIN
    CREATE ROLE neurocds_service NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- made by another database on this cluster (roles are cluster-wide)
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO neurocds_service', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO neurocds_service;
GRANT SELECT, INSERT ON decisions, feedback TO neurocds_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON analyses, seen_tokens TO neurocds_service;
GRANT SELECT ON __diesel_schema_migrations TO neurocds_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO neurocds_service;
