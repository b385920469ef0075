-- The audit trail: an append-only, hash-chained log of every decision neurocds makes, and of the
-- feedback clinicians give on its cards. Rows are never updated or deleted (triggers below); each
-- row stores the SHA-256 of its own canonical content and the hash of the row before it, so
-- `neurocds audit verify` can name the first row that was altered.

CREATE TABLE decisions (
    seq                   BIGSERIAL PRIMARY KEY,        -- chain order
    decision_id           UUID        NOT NULL UNIQUE,
    recorded_at           TIMESTAMPTZ NOT NULL,
    hook                  TEXT        NOT NULL,          -- order-select | order-sign
    hook_instance         TEXT        NOT NULL,
    service_id            TEXT        NOT NULL,
    client_iss            TEXT        NOT NULL,
    user_ref              TEXT,                          -- Practitioner/123
    patient_ref           TEXT        NOT NULL,          -- Patient/abc
    order_refs            JSONB       NOT NULL,          -- ServiceRequest ids in the hook
    study_uid             TEXT,
    series                JSONB       NOT NULL,          -- chosen and rejected series, with reasons
    model_version         TEXT,
    member_hashes         JSONB       NOT NULL,
    preprocessing_version TEXT,
    member_probabilities  JSONB       NOT NULL,          -- P(lymphoma) per member
    ensemble_probability  DOUBLE PRECISION,              -- raw mean
    calibrated_probability DOUBLE PRECISION,
    member_spread         DOUBLE PRECISION,
    recommendation        TEXT,                          -- biopsy | resection-planning | tumour-board
    outcome               TEXT        NOT NULL,          -- recommended | abstained | unavailable | pending
    silent                BOOLEAN     NOT NULL,          -- analysed and audited, no card returned
    reason                TEXT,                          -- why abstained / unavailable
    card_uuid             UUID,
    stage_timings_ms      JSONB       NOT NULL,
    report                JSONB,                         -- DiagnosticReport + Device + Provenance
    content_hash          TEXT        NOT NULL,
    prev_hash             TEXT        NOT NULL
);
CREATE INDEX decisions_recorded_at ON decisions (recorded_at);
CREATE INDEX decisions_patient ON decisions (patient_ref);
CREATE INDEX decisions_card ON decisions (card_uuid);

CREATE TABLE feedback (
    seq            BIGSERIAL PRIMARY KEY,
    feedback_id    UUID        NOT NULL UNIQUE,
    recorded_at    TIMESTAMPTZ NOT NULL,
    card_uuid      UUID        NOT NULL,
    decision_id    UUID,                                 -- the decision whose card this was
    service_id     TEXT        NOT NULL,
    client_iss     TEXT        NOT NULL,
    outcome        TEXT        NOT NULL,                 -- accepted | overridden
    outcome_at     TIMESTAMPTZ NOT NULL,
    accepted_suggestions JSONB NOT NULL,
    override_reason JSONB,
    content_hash   TEXT        NOT NULL,
    prev_hash      TEXT        NOT NULL
);
CREATE INDEX feedback_card ON feedback (card_uuid);
CREATE INDEX feedback_decision ON feedback (decision_id);

CREATE FUNCTION neurocds_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % audit log is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION neurocds_refuse_change();
CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
    FOR EACH STATEMENT EXECUTE FUNCTION neurocds_refuse_change();
CREATE TRIGGER feedback_append_only BEFORE UPDATE OR DELETE ON feedback
    FOR EACH ROW EXECUTE FUNCTION neurocds_refuse_change();
CREATE TRIGGER feedback_no_truncate BEFORE TRUNCATE ON feedback
    FOR EACH STATEMENT EXECUTE FUNCTION neurocds_refuse_change();

REVOKE UPDATE, DELETE, TRUNCATE ON decisions, feedback FROM PUBLIC;

-- Analyses in flight or finished, per patient, study and model: the shared state that lets
-- several hooks (and several replicas) run one analysis once and reuse its result. Not part of the
-- audit log: rows here change as an analysis progresses.
CREATE TABLE analyses (
    patient_ref   TEXT        NOT NULL,
    study_uid     TEXT        NOT NULL,
    model_version TEXT        NOT NULL,
    state         TEXT        NOT NULL,                  -- running | done | failed
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    result        JSONB,
    PRIMARY KEY (patient_ref, study_uid, model_version)
);
