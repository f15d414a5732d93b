//! `vobiz-tunnel relay`: validate the settings, get the certificate, start the
//! [`RelayServer`], print its log lines on stdout, and stop cleanly on Ctrl-C or SIGTERM.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use super::config::{RelayCerts, RelayConfig};
use super::log::RelayLog;
use super::protocol::LISTENER_ALPN;
use super::server::RelayServer;
use crate::cli::RelayArgs;

/// Runs the relay until it is told to stop; the exit status.
pub fn relay_command(args: &RelayArgs) -> anyhow::Result<i32> {
    let config = RelayConfig::from_args(args)?;
    for warning in config.warnings() {
        eprintln!("vobiz-tunnel relay: warning: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (log, lines) = RelayLog::channel(config.log_format);
    let printer = spawn_printer(lines);
    let result = runtime.block_on(run(config, log));
    // Connection tasks still holding the log end with the runtime; then the printer drains.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let _ = printer.join();
    result.map(|()| 0)
}

async fn run(config: RelayConfig, log: RelayLog) -> anyhow::Result<()> {
    let stop = crate::shutdown::stop_signal()?;
    let tls = server_tls(&config.certs).await?;
    let listen = config.listen;
    let summary = routes_summary(&config);
    let server = RelayServer::start(config, tls, log.clone())
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    log.notice(&format!(
        "vobiz-tunnel relay listening on {}; {summary}",
        server.local_addr
    ));
    stop.await;
    log.notice("vobiz-tunnel relay stopping");
    server.shutdown().await;
    Ok(())
}

/// Routes (never their tokens), hold and allow-list, for the start-up line.
fn routes_summary(config: &RelayConfig) -> String {
    let routes: Vec<String> = config.routes.iter().map(|r| r.name()).collect();
    let allow = match &config.allow {
        Some(blocks) => format!("{} allowed source block(s)", blocks.len()),
        None => "callbacks from any address".into(),
    };
    format!(
        "routes: {}; hold {:.1} s; {allow}",
        routes.join(", "),
        config.hold.as_secs_f64()
    )
}

/// The listener's TLS settings: `--cert/--key` (reloaded when the files change), ACME, or
/// the development certificate; all offer the tunnel's ALPN next to h2 and HTTP/1.1.
async fn server_tls(certs: &RelayCerts) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    if let RelayCerts::Dev { dir } = certs {
        eprintln!(
            "vobiz-tunnel relay: no --cert/--key or --acme; using the development certificate \
             in {} (Vobiz will not trust it)",
            dir.display()
        );
    }
    let alpn = LISTENER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(crate::tls::relay_server_config(certs, alpn).await?)
}

/// Prints log lines on stdout from a thread of its own, so a slow terminal never holds up a
/// callback. If stdout goes away the lines are still drained.
fn spawn_printer(mut lines: mpsc::UnboundedReceiver<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let mut broken = false;
        while let Some(line) = lines.blocking_recv() {
            if !broken {
                let mut out = stdout.lock();
                broken = writeln!(out, "{line}").and_then(|()| out.flush()).is_err();
            }
        }
    })
}
