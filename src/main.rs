//! The `ringcast` binary: parse the command line, load the config, run the node.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use ringcast::access::{token, Action};
use ringcast::config::{Config, LogFormat};

/// mimalloc instead of glibc's malloc: every published message allocates its chunked body and
/// its frame (a few KiB, above glibc's per-thread cache), and with many small streams glibc's
/// bins were 18 % of the server's CPU (`perf`, 1,500 streams of one player each).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "ringcast",
    version,
    about = "RTMP media server: origins and edges on a gossip-built ring"
)]
struct Cli {
    /// TOML config file; without it the embedded default runs a standalone origin.
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Validate the config (file + RINGCAST_* environment), print the effective config, exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a signed URL (expires=...&sig=...) that allows publishing or playing one stream.
    Token(TokenArgs),
    /// Ask this node's HTTP listener (http.listen, from the same config and environment) for
    /// GET /healthz, or /readyz with --ready; exit 0 on 200, else 1. For container health
    /// checks (Docker HEALTHCHECK, compose), where the image has no HTTP client.
    Healthcheck(HealthcheckArgs),
}

#[derive(Args, Debug)]
struct HealthcheckArgs {
    /// Ask GET /readyz (503 while starting or draining) instead of GET /healthz.
    #[arg(long)]
    ready: bool,
    /// Give up after this many milliseconds (connect, then the whole answer).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    timeout_ms: u64,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["publish", "play"])))]
struct TokenArgs {
    /// Allow publishing this stream key (APP/STREAM).
    #[arg(long, value_name = "APP/STREAM")]
    publish: Option<String>,
    /// Allow playing this stream key (APP/STREAM).
    #[arg(long, value_name = "APP/STREAM")]
    play: Option<String>,
    /// How long the URL works: 30s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_name = "TTL")]
    ttl: String,
    /// Base URL; default rtmp://ADVERTISE from the config's rtmp.advertise, else
    /// rtmp://127.0.0.1:PORT with the port of rtmp.listen.
    #[arg(long, value_name = "rtmp://HOST:PORT")]
    url: Option<String>,
    /// Bind the URL to this client address (for token.bind_ip).
    #[arg(long, value_name = "ADDR")]
    ip: Option<IpAddr>,
    /// Signing key; default: the first of RINGCAST_TOKEN__KEYS (comma-separated). A key on
    /// the command line is visible to other local users (ps); prefer the variable.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
}

/// The variable with the signing keys until `token.keys` is a config key.
const TOKEN_KEYS_ENV: &str = "RINGCAST_TOKEN__KEYS";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Token(args)) => return token_command(cli.config.as_deref(), args),
        Some(Command::Healthcheck(args)) => {
            return healthcheck_command(cli.config.as_deref(), args)
        }
        None => {}
    }
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringcast: config error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        // The checkers read their keys and files: what would stop a start stops this too.
        if let Err(e) = ringcast::access::build(&cfg) {
            eprintln!("ringcast: config error: {e}");
            return ExitCode::from(2);
        }
        if let Err(e) = ringcast::tls::NodeTls::from_config(&cfg) {
            eprintln!("ringcast: config error: {e}");
            return ExitCode::from(2);
        }
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
        let signals = ringcast::app::Signals::default();
        tokio::spawn(wait_for_signal(signals.clone()));
        // Watched before the node starts: unwatched, a SIGHUP would end the process.
        #[cfg(unix)]
        tokio::spawn(wait_for_hangup(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()),
            signals.clone(),
        ));
        match ringcast::app::run(cfg, signals).await {
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

/// `ringcast token`: prints the URL on stdout, when it expires (and the encoder fields) on
/// stderr; exit code 2 on bad input.
fn token_command(config: Option<&Path>, args: &TokenArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("ringcast token: {msg}");
        ExitCode::from(2)
    };
    let (action, stream_key) = match (&args.publish, &args.play) {
        (Some(k), None) => (Action::Publish, k.as_str()),
        (None, Some(k)) => (Action::Play, k.as_str()),
        _ => return fail("give exactly one of --publish and --play".to_owned()),
    };
    let ttl = match token::parse_ttl(&args.ttl) {
        Ok(t) => t,
        Err(e) => return fail(format!("--ttl: {e}")),
    };
    let cfg = match Config::load(config) {
        Ok(cfg) => cfg,
        Err(e) => return fail(format!("config error: {e}")),
    };
    // `--key`, else the first of `token.keys` (file or RINGCAST_TOKEN__KEYS) signs.
    let keys: Vec<String> = match &args.key {
        Some(k) => vec![k.clone()],
        None => cfg.token.keys.clone(),
    };
    if keys.is_empty() {
        return fail(format!(
            "no signing key: give --key, or set token.keys (or {TOKEN_KEYS_ENV})"
        ));
    }
    let base = match &args.url {
        Some(u) => u.clone(),
        None => default_base_url(&cfg),
    };
    let now = token::now_unix();
    match token::token_url(&keys, action, stream_key, &base, ttl, args.ip, now) {
        Ok(signed) => {
            println!("{}", signed.url);
            eprintln!(
                "expires {} (in {}); encoders with separate fields: server {} and stream key {}",
                token::format_utc(signed.expires),
                args.ttl.trim(),
                signed.server,
                signed.stream
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `rtmp://` + `rtmp.advertise` if set (with a real port), else the loopback address with the
/// port of `rtmp.listen` (1935 if that is 0).
fn default_base_url(cfg: &Config) -> String {
    if let Some((_, port)) = ringcast::config::parse_advertise(&cfg.rtmp.advertise) {
        if port != 0 {
            return format!("rtmp://{}", cfg.rtmp.advertise);
        }
    }
    let port = match cfg.rtmp.listen.port() {
        0 => 1935,
        p => p,
    };
    format!("rtmp://127.0.0.1:{port}")
}

/// `ringcast healthcheck`: GET /healthz (or /readyz) on `http.listen`, a wildcard address
/// asked on loopback. Every failure exits 1, a bad config included: Docker reserves exit
/// code 2 of a health check.
fn healthcheck_command(config: Option<&Path>, args: &HealthcheckArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("ringcast healthcheck: {msg}");
        ExitCode::FAILURE
    };
    let cfg = match Config::load(config) {
        Ok(cfg) => cfg,
        Err(e) => return fail(format!("config error: {e}")),
    };
    let listen = cfg.http.listen;
    if listen.port() == 0 {
        return fail(format!(
            "http.listen ({listen}) has port 0: the port is only known to the running node"
        ));
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    match http_get_status(addr, path, timeout) {
        Ok((200, _)) => {
            println!("GET http://{addr}{path}: 200");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => fail(format!(
            "GET http://{addr}{path}: {status} {}",
            body.chars().take(200).collect::<String>().trim()
        )),
        Err(e) => fail(format!("GET http://{addr}{path}: {e}")),
    }
}

/// One HTTP/1.1 GET with `Connection: close`: the status code and the start of the body.
/// Blocking, bounded by `timeout` for the connect and for the answer, at most 64 KiB read.
fn http_get_status(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ringcast-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while answer.len() < 64 * 1024 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for the answer".to_owned());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                text.chars().take(40).collect::<String>()
            )
        })?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
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

/// The first SIGINT or SIGTERM cancels `drain` (the node keeps serving what it holds, see
/// `app::run`); the next one cancels `stop` (sessions are closed now).
async fn wait_for_signal(signals: ringcast::app::Signals) {
    for token in [&signals.drain, &signals.stop] {
        let name = next_signal().await;
        if token == &signals.drain {
            info!("{name}: draining (a second signal stops at once)");
        } else {
            info!("{name}: shutting down");
        }
        token.cancel();
    }
}

/// Each SIGHUP asks the node to reload its RTMPS certificate (and never stops it).
#[cfg(unix)]
async fn wait_for_hangup(
    hangup: std::io::Result<tokio::signal::unix::Signal>,
    signals: ringcast::app::Signals,
) {
    match hangup {
        Ok(mut hup) => {
            while hup.recv().await.is_some() {
                signals.reload.notify_one();
            }
        }
        Err(e) => error!(error = %e, "cannot watch SIGHUP; certificates will not reload"),
    }
}

/// Waits for SIGINT or SIGTERM; its name.
async fn next_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
