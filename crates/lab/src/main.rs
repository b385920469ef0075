//! The `neurocds-lab` command: make cohorts, train the ensemble, and judge it.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "neurocds-lab", about = "The neurocds laboratory: synthetic cohorts, training and evaluation of the GBM-vs-PCNSL ensemble")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic GBM / lymphoma cohort (DICOM studies + manifest).
    Synth(neurocds_lab::cohort::cli::SynthArgs),
    /// Train the GBM-vs-PCNSL ensemble on a synthetic cohort and write members, manifest, card and validation report.
    Train(neurocds_lab::train::TrainArgs),
    /// Evaluate an ensemble on a labelled cohort: AUC with CIs, calibration, subgroups, ensemble size.
    Evaluate(neurocds_lab::evaluate::EvaluateArgs),
    /// Check the scope gate on a hospital mix (tumours, normal brains, extra-axial masses): no recommendation may reach a study without an intra-axial tumour.
    ScopeCheck(neurocds_lab::scope_check::ScopeCheckArgs),
}

fn main() -> ExitCode {
    let device = neurocds_analysis::inference::select_device(neurocds_analysis::inference::device::DeviceChoice::Auto)
        .map(neurocds_analysis::inference::device::device_name)
        .unwrap_or_else(|e| e);
    let version: &'static str = Box::leak(format!("{} (libtorch via tch 0.26, device: {device})", env!("CARGO_PKG_VERSION")).into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Logs as the service writes them: one JSON object per line on stderr (progress bars go to
    // the terminal).
    let filter = EnvFilter::try_from_env("NEUROCDS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().flatten_event(true).with_target(true).with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let result: anyhow::Result<()> = match cli.command {
        Command::Synth(args) => neurocds_lab::cohort::cli::run(args).map_err(Into::into),
        Command::Train(args) => args.run().map_err(Into::into),
        Command::Evaluate(args) => args.run().map_err(Into::into),
        Command::ScopeCheck(args) => args.run().map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("neurocds-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
