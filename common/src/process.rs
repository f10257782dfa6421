//! Process plumbing every binary of the lab shares, written once: where logs go and what asks a
//! server to stop.

use std::io::IsTerminal;

/// Logs to stderr, filtered by `RUST_LOG` or else `default_filter`; colour codes only on a
/// terminal, never in a log file or a pipe. `targets`: prefix lines with the module that logged.
pub fn init_tracing(default_filter: &str, targets: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(targets)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The default filter of the protocol servers: their own events, the libraries' warnings.
pub const SERVER_LOG_FILTER: &str = "info,sqlx=warn,h2=warn,tower=warn,rdkafka=warn";

/// Completes on SIGTERM (the lab's polite stop) or Ctrl-C.
pub async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}
