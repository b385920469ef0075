DELETE FROM analyses;
ALTER TABLE analyses DROP CONSTRAINT analyses_pkey;
ALTER TABLE analyses DROP COLUMN attempts;
ALTER TABLE analyses DROP COLUMN until_at;
ALTER TABLE analyses DROP COLUMN source;
ALTER TABLE analyses DROP COLUMN client;
ALTER TABLE analyses ADD PRIMARY KEY (patient_ref, study_uid, model_version);
