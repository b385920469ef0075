//! The `neurocds` command: the service and its operational tools (migrations, the audit trail).
//! The laboratory's commands live in `neurocds-lab` (crates/lab).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use neurocds::{
    audit::{checkpoint, db},
    config::Settings,
    startup::{Application, WorkerProcess},
    telemetry,
};

#[derive(Parser)]
#[command(
    name = "neurocds",
    about = "CDS Hooks service: GBM vs primary CNS lymphoma from a prior brain MRI",
    after_help = "synth, train, evaluate and scope-check live in the lab binary: neurocds-lab --help"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CDS Hooks service (applies pending migrations first). It runs an analysis worker
    /// too unless `worker.embedded` is off.
    Serve,
    /// Run an analysis worker alone: claims analyses from the queue in PostgreSQL, retrieves,
    /// preprocesses, runs the ensemble (CUDA when present), records results. Serves /healthz,
    /// /readyz and /metrics on `worker.listen`.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Audit trail tools: `audit verify` walks the hash chain and names the first broken row.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The analysis queue: `queue requeue` sends dead letters back to the workers.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Queue dead-lettered analyses again now, attempts reset (after fixing what made them
    /// fail; `/queue` and `GET /audit/queue` list them with their last error).
    Requeue {
        /// Only this study's (its StudyInstanceUID).
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        study: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// The laboratory's commands, which moved to their own binary (`neurocds-lab`) so that the
/// service never links the cohort generator, training or evaluation. The old spelling still
/// works: `neurocds synth ...` runs `neurocds-lab synth ...` when it sits next to this binary,
/// and says where the command went otherwise.
const LAB_COMMANDS: [&str; 4] = ["synth", "train", "evaluate", "scope-check"];

fn forward_to_lab(args: &[std::ffi::OsString]) -> ExitCode {
    let lab = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("neurocds-lab"))).filter(|p| p.is_file());
    let command = args[0].to_string_lossy();
    let Some(lab) = lab else {
        eprintln!("neurocds: `{command}` moved to the lab binary: run `neurocds-lab {command} ...` (build it with `cargo build --release -p neurocds-lab`)");
        return ExitCode::from(2);
    };
    match std::process::Command::new(&lab).args(args).status() {
        Ok(status) => status.code().map(|c| ExitCode::from(c.clamp(0, 255) as u8)).unwrap_or(ExitCode::FAILURE),
        Err(e) => {
            eprintln!("neurocds: cannot run {}: {e}", lab.display());
            ExitCode::FAILURE
        }
    }
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
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| LAB_COMMANDS.iter().any(|c| a == c)) {
        return forward_to_lab(&args);
    }
    let device = neurocds_analysis::inference::select_device(neurocds::config::DeviceChoice::Auto)
        .map(neurocds_analysis::inference::device::device_name)
        .unwrap_or_else(|e| e);
    let version: &'static str = Box::leak(format!("{} (libtorch via tch 0.26, device: {device})", env!("CARGO_PKG_VERSION")).into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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
    if !matches!(command, Command::Serve | Command::Worker) {
        telemetry::init("info");
    }
    match command {
        Command::Serve => {
            let settings = Settings::load()?;
            let _telemetry = telemetry::init_with("info", &settings.traces)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            runtime.block_on(async {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await?;
                tracing::info!("neurocds stopped");
                Ok(())
            })
        }
        Command::Worker => {
            let settings = Settings::load()?;
            let _telemetry = telemetry::init_with("info", &settings.traces)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            runtime.block_on(async {
                let worker = WorkerProcess::build(settings).await?;
                worker.run_until_stopped().await?;
                tracing::info!("neurocds worker stopped");
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
                    match b.table {
                        "decision_contents" => println!("audit trail BROKEN at the decision content {}: {}", b.id, b.reason),
                        table => println!("audit trail BROKEN at {table} row seq {} ({}): {}", b.seq, b.id, b.reason),
                    }
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
        Command::Queue { command: QueueCommand::Requeue { study, all: _ } } => {
            let settings = Settings::load()?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let db = neurocds::audit::Database::connect(&settings.database)?;
                let queue = neurocds::queue::Queue::new(db, &settings.hooks, &settings.worker, neurocds::queue::Events::new());
                let n = queue.requeue_dead(study.as_deref()).await?;
                println!("{n} dead-lettered analysis(es) queued again");
                Ok(())
            })
        }
        Command::Migrate => {
            let settings = Settings::load()?;
            let applied = db::run_migrations(settings.database.migration_url())?;
            println!("{} migration(s) applied; schema current", applied.len());
            Ok(())
        }
    }
}
