//! Diesel table definitions, kept in step with `migrations/` by hand (checked by the tests that
//! insert and read every column).

diesel::table! {
    decisions (seq) {
        seq -> BigInt,
        decision_id -> Uuid,
        recorded_at -> Timestamptz,
        hook -> Text,
        hook_instance -> Text,
        service_id -> Text,
        client_iss -> Text,
        user_ref -> Nullable<Text>,
        patient_ref -> Text,
        order_refs -> Jsonb,
        study_uid -> Nullable<Text>,
        series -> Jsonb,
        model_version -> Nullable<Text>,
        member_hashes -> Jsonb,
        preprocessing_version -> Nullable<Text>,
        member_probabilities -> Jsonb,
        ensemble_probability -> Nullable<Double>,
        calibrated_probability -> Nullable<Double>,
        member_spread -> Nullable<Double>,
        recommendation -> Nullable<Text>,
        outcome -> Text,
        silent -> Bool,
        reason -> Nullable<Text>,
        card_uuid -> Nullable<Uuid>,
        stage_timings_ms -> Jsonb,
        report -> Nullable<Jsonb>,
        content_sha256 -> Nullable<Text>,
        trace_id -> Nullable<Text>,
        content_hash -> Text,
        prev_hash -> Text,
    }
}

diesel::table! {
    feedback (seq) {
        seq -> BigInt,
        feedback_id -> Uuid,
        recorded_at -> Timestamptz,
        card_uuid -> Uuid,
        decision_id -> Nullable<Uuid>,
        service_id -> Text,
        client_iss -> Text,
        outcome -> Text,
        outcome_at -> Timestamptz,
        accepted_suggestions -> Jsonb,
        override_reason -> Nullable<Jsonb>,
        content_hash -> Text,
        prev_hash -> Text,
    }
}

diesel::table! {
    analyses (patient_ref, study_uid, model_version, client, source) {
        patient_ref -> Text,
        study_uid -> Text,
        model_version -> Text,
        state -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        result -> Nullable<Jsonb>,
        client -> Text,
        source -> Text,
        until_at -> Nullable<Timestamptz>,
        attempts -> Int4,
    }
}

diesel::table! {
    decision_contents (content_sha256) {
        content_sha256 -> Text,
        content -> Jsonb,
        recorded_at -> Timestamptz,
    }
}

diesel::joinable!(decisions -> decision_contents (content_sha256));
diesel::allow_tables_to_appear_in_same_query!(decisions, feedback, decision_contents);
