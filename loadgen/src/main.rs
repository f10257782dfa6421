use anyhow::Context;
use clap::Parser;
use loadgen::cli::{Cli, Command, EnvCommand};

/// The generator allocates per order (request, HTTP/2 frames); glibc malloc was its largest
/// single cost at high rates (see benches/generator_ceiling.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::process::init_tracing("warn,loadgen=info,common=info", false);
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match Cli::parse().command {
        Command::Compare(args) => {
            report(loadgen::run::lab::compare(&args, None, command_line).await?)
        }
        Command::Run(args) => report(
            loadgen::run::lab::compare(&args.compare, Some(args.protocol), command_line).await?,
        ),
        Command::Sweep(args) => report(loadgen::run::lab::sweep(&args, command_line).await?),
        Command::Soak(args) => {
            let (dir, summary) = loadgen::run::soak::run(&args, command_line).await?;
            print!("{}", summary.table());
            println!("report: {}", dir.join("report.md").display());
            anyhow::ensure!(
                !summary.failed(),
                "a schedule broke an invariant or lost an order: see {}",
                dir.join("report.md").display()
            );
            Ok(())
        }
        Command::Setup => {
            let script = loadgen::run::lab::scenarios_dir().join("../scripts/setup.sh");
            let status = std::process::Command::new("bash")
                .arg(&script)
                .status()
                .with_context(|| format!("running {}", script.display()))?;
            anyhow::ensure!(status.success(), "{} failed ({status})", script.display());
            Ok(())
        }
        Command::Env(EnvCommand::Up(args)) => Ok(loadgen::run::env_up::up(&args).await?),
        Command::Probe(args) => {
            let floors = loadgen::run::lab::probe(&args).await?;
            println!("{}", serde_json::to_string_pretty(&floors)?);
            Ok(())
        }
        Command::Check(args) => {
            let outcome = loadgen::run::check::run(&args).await?;
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
                std::fs::write(path, serde_json::to_string_pretty(report)?)
                    .with_context(|| format!("writing --json {}", path.display()))?;
            }
            anyhow::ensure!(report.is_clean(), "the invariant checker found problems");
            Ok(())
        }
    }
}

/// Prints the summary and where the report is; fails if any protocol broke an invariant.
fn report(
    (dir, summary): (std::path::PathBuf, loadgen::report::summary::Summary),
) -> anyhow::Result<()> {
    print!("{}", loadgen::report::print::summary(&summary));
    println!("report: {}", dir.join("report.md").display());
    let dirty: Vec<&str> = summary
        .runs
        .iter()
        .filter(|r| !r.check.is_clean())
        .filter_map(|r| Some(r.protocol?.name()))
        .collect();
    anyhow::ensure!(
        dirty.is_empty(),
        "the invariant checker found violations or leftovers after: {}",
        dirty.join(", ")
    );
    Ok(())
}
