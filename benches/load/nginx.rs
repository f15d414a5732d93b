//! The comparison: nginx as a TLS-terminating reverse proxy in front of the same origin, with
//! the same certificate (the dev ECDSA P-256 one), configured the way a careful operator
//! would: one worker per core, TLS 1.2/1.3, a shared session cache and tickets, keep-alive
//! to the origin, and its default access log (one line written per request, as vobiz-tunnel
//! records one row per request). `LOAD_NGINX_ACCESS_LOG=off` turns the log off.
//!
//! `LOAD_NGINX_UPSTREAM=close` compares with nginx's stock reverse-proxy setup instead: a
//! plain `proxy_pass`, which speaks HTTP/1.0 to the origin and opens a connection to it per
//! request (what most nginx configurations in front of an app do). vobiz-tunnel keeps its
//! connections to the local server alive in both cases.
//!
//! nginx is found on `PATH` or at `/usr/sbin/nginx` (`benches/compare-nginx.sh` installs the
//! Debian package); `LOAD_NGINX=0` skips it, `LOAD_NGINX=/path/to/nginx` picks a binary.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How nginx talks to the origin.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMode {
    /// Keep-alive connections to the origin (`keepalive` in the upstream block, HTTP/1.1).
    KeepAlive,
    /// nginx's default: HTTP/1.0 and a new connection to the origin per request.
    Close,
}

/// The upstream mode `LOAD_NGINX_UPSTREAM` asks for (`keepalive`, the default, or `close`).
/// Any other value stops the bench: a typo must not silently run the other comparison.
pub fn upstream_mode() -> UpstreamMode {
    match std::env::var("LOAD_NGINX_UPSTREAM").as_deref() {
        Err(_) | Ok("keepalive") => UpstreamMode::KeepAlive,
        Ok("close") => UpstreamMode::Close,
        Ok(other) => {
            eprintln!("LOAD_NGINX_UPSTREAM={other:?}: expected `keepalive` or `close`");
            std::process::exit(2);
        }
    }
}

pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
}

/// The nginx binary to compare with, if any.
pub fn binary() -> Option<PathBuf> {
    match std::env::var("LOAD_NGINX").ok().as_deref() {
        Some("0" | "off" | "no") => None,
        Some(path) if path.contains('/') => Some(PathBuf::from(path)),
        _ => std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file()),
    }
}

impl Nginx {
    /// Writes a configuration into `dir` and starts nginx in the foreground with it.
    pub fn start(
        binary: &Path,
        dir: &Path,
        origin: SocketAddr,
        cert: &Path,
        key: &Path,
    ) -> Result<Nginx, String> {
        // nginx cannot report a port it picked itself, so one is reserved and released here;
        // nothing else on a benchmark machine races for it in the microseconds between.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("reserving a port: {e}"))?
            .port();
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let access_log = match std::env::var("LOAD_NGINX_ACCESS_LOG").as_deref() {
            Ok("off") => "off".to_string(),
            _ => format!("{}/access.log", dir.display()),
        };
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (keepalive, upstream_http) = match upstream_mode() {
            UpstreamMode::KeepAlive => (
                "keepalive 128;",
                "proxy_http_version 1.1;\n            proxy_set_header Connection \"\";",
            ),
            UpstreamMode::Close => ("", ""),
        };
        let d = dir.display();
        let config = format!(
            "worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {access_log};
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream origin {{
        server {origin};
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        location / {{
            proxy_pass http://origin;
            {upstream_http}
            proxy_set_header Host $http_host;
        }}
    }}
}}
",
            cert = cert.display(),
            key = key.display(),
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).map_err(|e| format!("{}: {e}", conf.display()))?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut nginx = Nginx {
            addr: ([127, 0, 0, 1], port).into(),
            child,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(nginx.addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited with {status}: {log}"));
            }
            if Instant::now() > deadline {
                return Err("nginx did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Nginx {
    /// The master's pid (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown; its workers exit with the master.
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
