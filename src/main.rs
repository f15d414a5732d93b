//! The `vobiz-tunnel` binary: parse the command line, install the TLS crypto provider, run,
//! and map the result to an exit status (0 ok, 1 failure or invalid signature, 2 usage).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use time::UtcOffset;
use tracing_subscriber::EnvFilter;

use vobiz_tunnel::cli::{Cli, Command, ListenArgs, LogFormat};
use vobiz_tunnel::config::{CertSource, ListenConfig};
use vobiz_tunnel::forward::Upstream;
use vobiz_tunnel::output;
use vobiz_tunnel::replay::Replayer;
use vobiz_tunnel::tls;
use vobiz_tunnel::tui::{self, state::StatusInfo, TuiContext};
use vobiz_tunnel::tunnel::Tunnel;

/// Every request allocates on one thread and frees on another (the store's writer, the log
/// printer); glibc's allocator spent a fifth of the proxy's CPU on exactly that. It is built
/// not to ask for transparent huge pages (see Cargo.toml), and [`without_huge_pages`] keeps
/// the kernel from giving them anyway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. Each partly used 2 MiB page is
/// resident whole: with them, the proxy's resident size under load was ~24 MiB more (a third)
/// for no measurable speed. mimalloc's `no_thp` only stops it asking for them; where the
/// system gives them unasked (`/sys/kernel/mm/transparent_hugepage/enabled` = always, the
/// default on some distributions) this is what keeps them away.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    without_huge_pages();
    let cli = Cli::parse();
    // Read while the process has one thread: the local offset is unsound to query later.
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    // The relay is a server someone operates: when a certificate arrives or is replaced is
    // part of its story (until then HTTPS fails), so those lines show by default.
    let default_filter = match cli.command {
        Some(Command::Relay(_)) => "warn,vobiz_tunnel::tls=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("VOBIZ_TUNNEL_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal: in a file or a pipe the escapes are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let result = match cli.command {
        None => listen(&cli.listen, offset),
        Some(Command::Listen(args)) => listen(&args, offset),
        Some(Command::List(args)) => vobiz_tunnel::commands::list(&args, offset),
        Some(Command::Show(args)) => vobiz_tunnel::commands::show(&args, offset),
        Some(Command::Verify(args)) => vobiz_tunnel::commands::verify_command(&args),
        Some(Command::Replay(args)) => runtime()
            .and_then(|rt| rt.block_on(vobiz_tunnel::replay::replay_command(&args, offset))),
        Some(Command::Export(args)) => vobiz_tunnel::export::export_command(&args),
        Some(Command::Import(args)) => vobiz_tunnel::export::import_command(&args),
        Some(Command::Relay(args)) => vobiz_tunnel::relay::relay_command(&args),
        Some(Command::Trigger(args)) => {
            runtime().and_then(|rt| rt.block_on(vobiz_tunnel::trigger::trigger_command(&args)))
        }
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(error) => {
            // Each cause once: most of our errors already name theirs.
            let text = vobiz_tunnel::forward::error_chain(error.as_ref());
            eprintln!("vobiz-tunnel: {text}");
            match error.downcast_ref::<vobiz_tunnel::commands::UsageError>() {
                Some(_) => ExitCode::from(2),
                None => ExitCode::from(1),
            }
        }
    }
}

fn listen(args: &ListenArgs, offset: UtcOffset) -> anyhow::Result<i32> {
    let config = ListenConfig::from_args(args)?;
    for warning in config.warnings() {
        eprintln!("vobiz-tunnel: warning: {warning}");
    }
    let runtime = runtime()?;
    let (tunnel, stop) = runtime.block_on(async {
        let stop = vobiz_tunnel::shutdown::stop_signal()?;
        let tunnel = Tunnel::start(&config).await?;
        anyhow::Ok((tunnel, stop))
    })?;
    let interactive =
        config.tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if interactive {
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        runtime.spawn(async move {
            stop.await;
            flag.store(true, Ordering::Relaxed);
        });
        let result = tui::run(tui_context(
            &tunnel,
            &config,
            offset,
            stopped,
            runtime.handle(),
        ));
        let store = tunnel.store.path().display().to_string();
        runtime.block_on(tunnel.shutdown());
        result?;
        output::say(&format!(
            "vobiz-tunnel stopped; exchanges are in {store} (vobiz-tunnel list)"
        ));
    } else {
        let (events, relay) = tunnel.subscribe();
        print_banner(&tunnel, &config);
        let relay = relay.map(vobiz_tunnel::pipeline::ExchangeEvent::Relay);
        let printer = output::spawn_printer(events, relay, config.log_format, offset);
        // Replays and imports another process records here are logged too.
        vobiz_tunnel::other_writers::spawn(
            tunnel.store.path().to_path_buf(),
            tunnel.events.downgrade(),
        );
        runtime.block_on(async move {
            stop.await;
            tunnel.shutdown().await;
        });
        let _ = printer.join();
    }
    Ok(0)
}

fn tui_context(
    tunnel: &Tunnel,
    config: &ListenConfig,
    offset: UtcOffset,
    stop: Arc<AtomicBool>,
    runtime: &tokio::runtime::Handle,
) -> TuiContext {
    let tls = tls::client_config(&config.upstream_roots, &[]);
    let timeout = config.limits.forward_timeout;
    let (events, relay) = tunnel.subscribe();
    TuiContext {
        events,
        relay,
        store: tunnel.store.clone(),
        replayer: Replayer {
            store: tunnel.store.clone(),
            upstream: Upstream::new(
                config.forward.clone(),
                config.host_header,
                timeout,
                64 << 20,
                tls.clone(),
            ),
            keys: config.keys.clone(),
            public_url: config.public_url.clone(),
            events: Some(tunnel.events.clone()),
            timeout,
            tls,
        },
        status: StatusInfo {
            listen_url: tunnel.url(),
            forward: config.forward.to_string(),
            store_path: tunnel.store.path().display().to_string(),
            auth_tokens: config.keys.auth_tokens.len(),
            main_auth_tokens: config.keys.main_auth_tokens.len(),
        },
        offset,
        stop,
        runtime: runtime.clone(),
        dev_ca: match &config.certs {
            CertSource::Dev { dir } => {
                let ca = dir.join(tls::DEV_CA_FILE);
                Some(std::path::absolute(&ca).unwrap_or(ca))
            }
            CertSource::Files { .. } => None,
        },
        warnings: config.warnings(),
    }
}

/// The async runtime, with one worker thread per core but one.
///
/// The store's writer is a thread of its own that works for every callback (a SQLite
/// commit per batch); left one core, it never waits for a worker, and workers never steal
/// from each other across the only two cores of a small machine. On 2 cores this measured
/// 8–15% less CPU per request than a worker per core, and more requests per second, with
/// keep-alive and new connections alike. `TOKIO_WORKER_THREADS` overrides the count.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    Ok(builder.enable_all().build()?)
}

fn print_banner(tunnel: &Tunnel, config: &ListenConfig) {
    let keys = &config.keys;
    match config.log_format {
        LogFormat::Json => output::say(&format!(
            "{}",
            serde_json::json!({
                "type": "listening",
                "url": tunnel.url(),
                "forward": config.forward.to_string(),
                "store": tunnel.store.path().display().to_string(),
                "cert": tunnel.cert_path.display().to_string(),
                "auth_tokens": keys.auth_tokens.len(),
                "main_auth_tokens": keys.main_auth_tokens.len(),
                "reject_invalid": config.reject_invalid,
            })
        )),
        LogFormat::Text => {
            output::say(&format!("vobiz-tunnel listening on {}", tunnel.url()));
            output::say(&format!("  forwarding to  {}", config.forward));
            output::say(&format!(
                "  recording in   {}",
                tunnel.store.path().display()
            ));
            output::say(&format!("  certificate    {}", tunnel.cert_path.display()));
            let tokens = match (keys.auth_tokens.len(), keys.main_auth_tokens.len()) {
                (0, 0) => "not checked: set VOBIZ_AUTH_TOKEN (or --auth-token)".to_string(),
                (auth, main) => {
                    format!("checked with {auth} auth token(s), {main} main-account token(s)")
                }
            };
            output::say(&format!("  signatures     {tokens}"));
            if let Some(public) = &config.public_url {
                output::say(&format!("  public URL     {public}"));
            }
        }
    }
}
