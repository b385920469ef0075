-- Token ids (`jti`) accepted from each EHR, each kept until its token could no longer pass the
-- time checks: the replay check that every replica shares when `trust.shared_replay_check` is
-- on. Holds ids only, never a token. Rows past `forget_after` are swept as new ones arrive.
CREATE TABLE seen_tokens (
    iss          TEXT        NOT NULL,
    jti          TEXT        NOT NULL,
    forget_after TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX seen_tokens_forget_after ON seen_tokens (forget_after);
