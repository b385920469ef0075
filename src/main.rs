//! The `neurocds` command: the service and its tools.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use neurocds::{audit::db, config::Settings, startup::Application, telemetry};

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
    /// Recompute every row's hash; exit 0 when the chains hold, 2 when one is broken.
    Verify,
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
        Command::Audit { command: AuditCommand::Verify } => {
            let settings = Settings::load()?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let db = neurocds::audit::Database::connect(&settings.database)?;
                let (checked, broken) = db.verify_chains().await?;
                match broken {
                    None => {
                        println!("audit trail intact: {checked} rows checked");
                        Ok(())
                    }
                    Some(b) => {
                        println!("audit trail BROKEN at {} row seq {} ({}): {}", b.table, b.seq, b.id, b.reason);
                        Err(ChainBroken.into())
                    }
                }
            })
        }
        Command::Migrate => {
            let settings = Settings::load()?;
            let applied = db::run_migrations(&settings.database.url)?;
            println!("{} migration(s) applied; schema current", applied.len());
            Ok(())
        }
        Command::Synth(args) => Ok(neurocds::cohort::cli::run(args)?),
        Command::Train(args) => Ok(args.run()?),
        Command::Evaluate(args) => Ok(args.run()?),
        Command::ScopeCheck(args) => Ok(args.run()?),
    }
}
