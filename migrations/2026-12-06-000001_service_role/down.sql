-- The role is cluster-wide and may serve other databases: only this database's grants go.
REVOKE ALL ON decisions, feedback, analyses, seen_tokens, __diesel_schema_migrations FROM neurocds_service;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM neurocds_service;
REVOKE USAGE ON SCHEMA public FROM neurocds_service;
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM neurocds_service', current_database());
END
$$;
