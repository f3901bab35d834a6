//! The `ringcast` binary: parse the command line, load the config, run the node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use ringcast::config::{Config, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "ringcast",
    version,
    about = "RTMP media server: origins and edges on a gossip-built ring"
)]
struct Cli {
    /// TOML config file; without it the embedded default runs a standalone origin.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config (file + RINGCAST_* environment), print the effective config, exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringcast: config error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringcast: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        match ringcast::app::run(cfg, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.is_config_error() => {
                error!(error = %e, "ringcast failed");
                eprintln!("ringcast: config error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                error!(error = %e, "ringcast failed");
                ExitCode::FAILURE
            }
        }
    })
}

fn init_logging(cfg: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => info!("SIGINT: shutting down"),
                    _ = term.recv() => info!("SIGTERM: shutting down"),
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
                info!("SIGINT: shutting down");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    shutdown.cancel();
}
