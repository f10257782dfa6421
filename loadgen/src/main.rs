use anyhow::Context;
use clap::Parser;
use loadgen::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_target(false)
        .init();
    match Cli::parse().command {
        Command::Check(args) => {
            let outcome = loadgen::check::run(&args).await?;
            let report = &outcome.report;
            println!(
                "environment started in {:.1} s",
                outcome.env_start.as_secs_f64()
            );
            println!(
                "data set: seed {}, {} wallets holding {} cents, {} skus",
                outcome.data_set.spec.seed,
                outcome.data_set.wallets.len(),
                outcome.data_set.total_balance().0,
                outcome.data_set.stock.len()
            );
            for line in report.describe() {
                println!("{line}");
            }
            println!(
                "checker: {} violations, {} leftovers",
                report.violations.len(),
                report.leftovers.len()
            );
            if let Some(path) = &args.json {
                let text = serde_json::to_string_pretty(report)?;
                std::fs::write(path, text)
                    .with_context(|| format!("writing --json {}", path.display()))?;
            }
            anyhow::ensure!(report.is_clean(), "the invariant checker found problems");
        }
        Command::Run(args) => {
            let report = loadgen::run::run(&args).await?;
            print!("{}", loadgen::print::run_report(&report));
            anyhow::ensure!(
                report.check.is_clean(),
                "the invariant checker found problems"
            );
        }
    }
    Ok(())
}
