//! The `neurocds` command: the service and its tools.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use neurocds::{
    audit::{checkpoint, db},
    config::Settings,
    startup::Application,
    telemetry,
};

#[derive(Parser)]
#[command(name = "neurocds", about = "CDS Hooks service: GBM vs primary CNS lymphoma from a prior brain MRI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CDS Hooks service (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Audit trail tools: `audit verify` walks the hash chain and names the first broken row.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a synthetic GBM / lymphoma cohort (DICOM studies + manifest).
    Synth(neurocds::cohort::cli::SynthArgs),
    /// Train the GBM-vs-PCNSL ensemble on a synthetic cohort and write members, manifest, card and validation report.
    Train(neurocds::inference::train::TrainArgs),
    /// Evaluate an ensemble on a labelled cohort: AUC with CIs, calibration, subgroups, ensemble size.
    Evaluate(neurocds::inference::evaluate::EvaluateArgs),
    /// Check the scope gate on a hospital mix (tumours, normal brains, extra-axial masses): no recommendation may reach a study without an intra-axial tumour.
    ScopeCheck(neurocds::inference::scope_check::ScopeCheckArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every row's hash; exit 0 when the chains hold, 2 when one is broken. With
    /// `--checkpoint`, also check that every signed head in that file is still in the log.
    Verify {
        /// A checkpoint file written by `audit checkpoint` (or the service).
        #[arg(long, requires = "public_key")]
        checkpoint: Option<std::path::PathBuf>,
        /// The public key that signed the checkpoints (`checkpoint-key.pub.pem`).
        #[arg(long, requires = "checkpoint")]
        public_key: Option<std::path::PathBuf>,
    },
    /// Sign the logs' current heads and append them to a checkpoint file kept outside the
    /// database.
    Checkpoint {
        /// The signing key (`checkpoint-key.pem` from `audit keygen`).
        #[arg(long)]
        key: std::path::PathBuf,
        /// The checkpoint file (appended to; made if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Make an Ed25519 key pair for checkpoints: `checkpoint-key.pem` (private, 0600) and
    /// `checkpoint-key.pub.pem`, in a folder.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// `audit verify` found a broken chain (distinct from 1: could not check).
struct ChainBroken;

impl std::fmt::Display for ChainBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the audit chain is broken")
    }
}
impl std::fmt::Debug for ChainBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
impl std::error::Error for ChainBroken {}

fn main() -> ExitCode {
    let device = neurocds::inference::select_device(neurocds::config::DeviceChoice::Auto)
        .map(neurocds::inference::device::device_name)
        .unwrap_or_else(|e| e);
    let version: &'static str = Box::leak(format!("{} (libtorch via tch 0.26, device: {device})", env!("CARGO_PKG_VERSION")).into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    telemetry::init("info");
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<ChainBroken>() => ExitCode::from(2),
        Err(e) => {
            eprintln!("neurocds: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let settings = Settings::load()?;
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            runtime.block_on(async {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await?;
                tracing::info!("neurocds stopped");
                Ok(())
            })
        }
        Command::Audit { command: AuditCommand::Verify { checkpoint, public_key } } => {
            let settings = Settings::load()?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let db = neurocds::audit::Database::connect(&settings.database)?;
                let (checked, broken) = db.verify_chains().await?;
                if let Some(b) = broken {
                    println!("audit trail BROKEN at {} row seq {} ({}): {}", b.table, b.seq, b.id, b.reason);
                    return Err(ChainBroken.into());
                }
                println!("audit trail intact: {checked} rows checked");
                if let (Some(file), Some(key)) = (checkpoint, public_key) {
                    let key = checkpoint::PublicKey::load(&key)?;
                    match checkpoint::verify(&db, &key, &file).await? {
                        (lines, None) => println!("checkpoints hold: {lines} checkpoint(s) in {} checked", file.display()),
                        (_, Some(b)) => {
                            println!("audit trail BROKEN against {} line {}: {}", file.display(), b.line, b.reason);
                            return Err(ChainBroken.into());
                        }
                    }
                }
                Ok(())
            })
        }
        Command::Audit { command: AuditCommand::Checkpoint { key, out } } => {
            let settings = Settings::load()?;
            let key = checkpoint::SigningKey::load(&key)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let db = neurocds::audit::Database::connect(&settings.database)?;
                let c = checkpoint::append(&db, &key, &out).await?;
                println!("checkpoint appended to {}: decisions seq {}, feedback seq {}", out.display(), c.decisions.seq, c.feedback.seq);
                Ok(())
            })
        }
        Command::Audit { command: AuditCommand::Keygen { out } } => {
            let (private, public) = checkpoint::SigningKey::generate(&out)?;
            println!("signing key: {} (keep it off the database host)\npublic key:  {}", private.display(), public.display());
            Ok(())
        }
        Command::Migrate => {
            let settings = Settings::load()?;
            let applied = db::run_migrations(settings.database.migration_url())?;
            println!("{} migration(s) applied; schema current", applied.len());
            Ok(())
        }
        Command::Synth(args) => Ok(neurocds::cohort::cli::run(args)?),
        Command::Train(args) => Ok(args.run()?),
        Command::Evaluate(args) => Ok(args.run()?),
        Command::ScopeCheck(args) => Ok(args.run()?),
    }
}
