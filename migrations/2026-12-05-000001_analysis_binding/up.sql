-- An analysis belongs to the client that asked (issuer and tenant) and to the DICOMweb source its
-- pixels came from: a hook whose study resolves elsewhere never reuses another's result
-- (issue 15). Rows from before this had neither: they are dropped, being only a cache of work
-- that the next hook redoes (the decision log keeps every answer given).
DELETE FROM analyses;
ALTER TABLE analyses DROP CONSTRAINT analyses_pkey;
ALTER TABLE analyses ADD COLUMN client TEXT NOT NULL;
ALTER TABLE analyses ADD COLUMN source TEXT NOT NULL;
-- `done`: when a result the data did not settle (series missing, unreadable pixels) stops being
-- served (NULL: final). `failed`: when the next attempt may start (back-off).
ALTER TABLE analyses ADD COLUMN until_at TIMESTAMPTZ;
ALTER TABLE analyses ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE analyses ADD PRIMARY KEY (patient_ref, study_uid, model_version, client, source);
