//! Checkpoints: the chains' heads, signed, kept outside the database.
//!
//! The hash chain shows that no row was altered, inserted or removed *between* the first row and
//! the last one, but nothing in the database says which row is the last: whoever deletes the
//! newest rows (or rebuilds the chain from some row on) leaves a chain that still verifies. A
//! checkpoint pins the heads: for each log the `seq` and `content_hash` of its newest row, the
//! time, and an Ed25519 signature by a key the database never sees. `audit verify --checkpoint`
//! then checks that every checkpointed row is still there with the same hash:
//!
//! - the row is gone → the log was cut back;
//! - its hash differs → the chain was rewritten at or before that row.
//!
//! A checkpoint file holds one JSON object per line, appended (or shipped to an append-only
//! store). Each line carries the SHA-256 of the line before it, so a line removed from the
//! middle is detected as well. Rows written after the newest checkpoint are protected only
//! once the next one is made: the interval between checkpoints is the window.
//!
//! ```text
//! {"format":"neurocds-audit-checkpoint/1","at":"…","decisions":{"seq":42,"hash":"…"},
//!  "feedback":{"seq":3,"hash":"…"},"previous":"<sha256 of the line before>","key_id":"…",
//!  "signature":"<ed25519, hex, over the canonical JSON of every other field>"}
//! ```

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{
    chain::{GENESIS, canonical_json},
    db::Database,
    error::AuditError,
    schema::{decisions, feedback},
};

/// The `format` of every line this version writes.
pub const FORMAT: &str = "neurocds-audit-checkpoint/1";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const SPKI_ED25519_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The newest row of one log: `seq` 0 and [`GENESIS`] while the log is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    fn empty() -> Head {
        Head { seq: 0, hash: GENESIS.into() }
    }
}

/// One signed line of a checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub decisions: Head,
    pub feedback: Head,
    /// SHA-256 (hex) of the line before this one in the file; [`GENESIS`] for the first line.
    pub previous: String,
    /// Which key signed it: the first 16 hex digits of SHA-256 of the public key.
    pub key_id: String,
    /// Ed25519 signature (hex) over the canonical JSON of every other field.
    pub signature: String,
}

impl Checkpoint {
    /// The bytes the signature covers: the canonical JSON of the line without `signature`.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(fields) = value.as_object_mut() {
            fields.remove("signature");
        }
        canonical_json(&value).into_bytes()
    }
}

/// Why checkpointing or checking against checkpoints could not be done at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("checkpoint file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Audit(#[from] AuditError),
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Key { path: path.to_owned(), reason: reason.to_string() }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::File { path: path.to_owned(), reason: reason.to_string() }
}

/// The key that signs checkpoints (Ed25519, PKCS#8 PEM). Whoever holds it can make checkpoints;
/// keep it off the database host.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

/// The key that checks checkpoints (Ed25519 SubjectPublicKeyInfo PEM): safe to hand to auditors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl SigningKey {
    /// Makes a key pair in `dir`: `checkpoint-key.pem` (private, mode 0600, never overwritten)
    /// and `checkpoint-key.pub.pem`. Returns both paths.
    pub fn generate(dir: &Path) -> Result<(PathBuf, PathBuf), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| key_error(dir, e))?;
        let private_path = dir.join("checkpoint-key.pem");
        let public_path = dir.join("checkpoint-key.pub.pem");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| key_error(&private_path, "key generation failed"))?;
        let key = SigningKey { pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| key_error(&private_path, e))? };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&private_path).map_err(|e| key_error(&private_path, e))?;
        file.write_all(pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec())).as_bytes()).map_err(|e| key_error(&private_path, e))?;
        std::fs::write(&public_path, key.public().to_pem()).map_err(|e| key_error(&public_path, e))?;
        Ok((private_path, public_path))
    }

    pub fn load(path: &Path) -> Result<SigningKey, CheckpointError> {
        let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
        let block = pem::parse(text).map_err(|e| key_error(path, e))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(key_error(path, "not a PKCS#8 PRIVATE KEY PEM"));
        }
        let pair = Ed25519KeyPair::from_pkcs8(block.contents()).map_err(|e| key_error(path, format!("not an Ed25519 key: {e}")))?;
        Ok(SigningKey { pair })
    }

    pub fn public(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&self.pair.public_key().as_ref()[..32]);
        PublicKey(bytes)
    }

    /// Signs the heads as of `at`, following the line whose hash is `previous`.
    pub fn sign(&self, decisions: Head, feedback: Head, previous: String, at: OffsetDateTime) -> Checkpoint {
        let mut checkpoint = Checkpoint { format: FORMAT.into(), at, decisions, feedback, previous, key_id: self.public().key_id(), signature: String::new() };
        checkpoint.signature = hex::encode(self.pair.sign(&checkpoint.signed_bytes()).as_ref());
        checkpoint
    }
}

impl PublicKey {
    pub fn load(path: &Path) -> Result<PublicKey, CheckpointError> {
        let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
        let block = pem::parse(text).map_err(|e| key_error(path, e))?;
        let der = block.contents();
        if block.tag() != "PUBLIC KEY" || der.len() != 44 || der[..12] != SPKI_ED25519_PREFIX {
            return Err(key_error(path, "not an Ed25519 PUBLIC KEY PEM"));
        }
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&der[12..]);
        Ok(PublicKey(bytes))
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem::encode(&pem::Pem::new("PUBLIC KEY", der))
    }

    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    /// Whether `checkpoint` was signed by this key and not changed since.
    pub fn verifies(&self, checkpoint: &Checkpoint) -> bool {
        let Ok(signature) = hex::decode(&checkpoint.signature) else { return false };
        checkpoint.key_id == self.key_id() && UnparsedPublicKey::new(&ED25519, self.0).verify(&checkpoint.signed_bytes(), &signature).is_ok()
    }
}

fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// The non-empty lines of a checkpoint file (none when it does not exist yet).
fn read_lines(path: &Path) -> Result<Vec<String>, CheckpointError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(file_error(path, e)),
    }
}

/// Where one checkpoint no longer holds, or why a line of the file cannot be trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointBreak {
    /// 1-based line of the checkpoint file.
    pub line: usize,
    pub reason: String,
}

impl Database {
    /// The newest row (`seq`, `content_hash`) of the decision log and of the feedback log.
    pub async fn chain_heads(&self) -> Result<(Head, Head), AuditError> {
        let mut conn = self.conn().await?;
        let decisions = decisions::table
            .order(decisions::seq.desc())
            .select((decisions::seq, decisions::content_hash))
            .first::<(i64, String)>(&mut conn)
            .await
            .optional()
            .map_err(AuditError::query("reading the decision log's head"))?;
        let feedback = feedback::table
            .order(feedback::seq.desc())
            .select((feedback::seq, feedback::content_hash))
            .first::<(i64, String)>(&mut conn)
            .await
            .optional()
            .map_err(AuditError::query("reading the feedback log's head"))?;
        let head = |row: Option<(i64, String)>| row.map_or_else(Head::empty, |(seq, hash)| Head { seq, hash });
        Ok((head(decisions), head(feedback)))
    }

    /// The `content_hash` of row `seq` of `table` ("decisions" or "feedback"), if it exists.
    async fn hash_at(&self, table: &str, seq: i64) -> Result<Option<String>, AuditError> {
        let mut conn = self.conn().await?;
        let query = match table {
            "decisions" => decisions::table.filter(decisions::seq.eq(seq)).select(decisions::content_hash).first::<String>(&mut conn).await,
            _ => feedback::table.filter(feedback::seq.eq(seq)).select(feedback::content_hash).first::<String>(&mut conn).await,
        };
        query.optional().map_err(AuditError::query("reading a checkpointed row"))
    }
}

/// Signs the database's current heads and appends the checkpoint to `path` (made if missing),
/// flushed to disk before returning.
pub async fn append(db: &Database, key: &SigningKey, path: &Path) -> Result<Checkpoint, CheckpointError> {
    let (decisions, feedback) = db.chain_heads().await?;
    let previous = read_lines(path)?.last().map_or_else(|| GENESIS.to_owned(), |l| line_hash(l));
    let checkpoint = key.sign(decisions, feedback, previous, OffsetDateTime::now_utc());
    let mut line = serde_json::to_string(&checkpoint).map_err(|e| file_error(path, e))?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(|e| file_error(path, e))?;
    file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| file_error(path, e))?;
    Ok(checkpoint)
}

/// Checks every line of the checkpoint file at `path` against `key` and the database: signed
/// by the key, chained to the line before, heads never going backwards, and each checkpointed
/// row still present with the hash it had. Returns the number of lines checked and the first
/// break. A file with no line is an error: it proves nothing.
pub async fn verify(db: &Database, key: &PublicKey, path: &Path) -> Result<(usize, Option<CheckpointBreak>), CheckpointError> {
    let lines = read_lines(path)?;
    if lines.is_empty() {
        return Err(file_error(path, "holds no checkpoint"));
    }
    let mut previous_hash = GENESIS.to_owned();
    let mut previous_heads: Option<(i64, i64)> = None;
    for (i, line) in lines.iter().enumerate() {
        let at_line = |reason: String| Ok((i, Some(CheckpointBreak { line: i + 1, reason })));
        let checkpoint: Checkpoint = match serde_json::from_str(line) {
            Ok(c) => c,
            Err(e) => return at_line(format!("not a checkpoint: {e}")),
        };
        if checkpoint.format != FORMAT {
            return at_line(format!("unknown format {:?}", checkpoint.format));
        }
        if !key.verifies(&checkpoint) {
            return at_line("its signature does not verify with this key (made by another key, or edited)".into());
        }
        if checkpoint.previous != previous_hash {
            return at_line("it does not follow the line before it (a checkpoint was removed or changed)".into());
        }
        let heads = (checkpoint.decisions.seq, checkpoint.feedback.seq);
        if previous_heads.is_some_and(|(d, f)| heads.0 < d || heads.1 < f) {
            return at_line("its heads are older than the checkpoint before it".into());
        }
        for (table, head) in [("decisions", &checkpoint.decisions), ("feedback", &checkpoint.feedback)] {
            if head.seq == 0 {
                continue;
            }
            let at = checkpoint.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            match db.hash_at(table, head.seq).await? {
                None => return at_line(format!("{table} row seq {} was the head at {at} and is gone: the log was cut back", head.seq)),
                Some(hash) if hash != head.hash => {
                    return at_line(format!("{table} row seq {} no longer has the hash it had at {at}: the chain was rewritten", head.seq));
                }
                Some(_) => {}
            }
        }
        previous_hash = line_hash(line);
        previous_heads = Some(heads);
    }
    Ok((lines.len(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64) -> Head {
        Head { seq, hash: format!("{seq:064x}") }
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_not_once_edited() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = SigningKey::generate(dir.path()).unwrap();
        let key = SigningKey::load(&private).unwrap();
        let public = PublicKey::load(&public).unwrap();
        assert_eq!(key.public(), public);
        let checkpoint = key.sign(head(7), head(0), GENESIS.into(), OffsetDateTime::UNIX_EPOCH);
        assert!(public.verifies(&checkpoint));

        let mut cut = checkpoint.clone();
        cut.decisions.seq = 5;
        assert!(!public.verifies(&cut), "a lowered head must not verify");

        let other_dir = tempfile::tempdir().unwrap();
        let (other, _) = SigningKey::generate(other_dir.path()).unwrap();
        let forged = SigningKey::load(&other).unwrap().sign(head(7), head(0), GENESIS.into(), OffsetDateTime::UNIX_EPOCH);
        assert!(!public.verifies(&forged), "another key's checkpoint must not verify");
    }

    #[test]
    fn the_private_key_is_never_overwritten_and_is_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = SigningKey::generate(dir.path()).unwrap();
        assert!(SigningKey::generate(dir.path()).is_err(), "a second keygen into the same folder must not replace the key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
