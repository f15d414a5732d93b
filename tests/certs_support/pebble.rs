//! Pebble, Let's Encrypt's ACME test server, run for one test on loopback:
//!
//! - its HTTPS (ACME on `listen`, management on `management`) uses a certificate for
//!   127.0.0.1 from a CA made here (Debian's package ships no test certificates);
//! - it resolves every name through [`dns`] below, which answers A = 127.0.0.1 and no AAAA,
//!   so test domains like `alpn.vobiz-tunnel.test` lead its validation to our listeners;
//! - its validation connects to `httpPort`/`tlsPort`, ports the test chose;
//! - `PEBBLE_VA_NOSLEEP=1` (validate at once), `PEBBLE_VA_ALWAYS_VALID=0` (really validate),
//!   `PEBBLE_WFE_NONCEREJECT=0` (no random badNonce), `PEBBLE_AUTHZREUSE=0`.
//!
//! Dropping [`Pebble`] kills it. When Pebble is not installed or does not start,
//! [`Pebble::start`] says why and the test calls [`skip`], which prints a loud notice (or
//! fails, when `VOBIZ_TUNNEL_REQUIRE_PEBBLE=1`).

#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream as StdTcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pki::{client_config, TestCa};

/// Prints why a Pebble test did not run, unmissably; or fails if Pebble is required.
pub fn skip(test: &str, reason: &str) {
    let banner = "!".repeat(78);
    // Straight to the process's stderr: `eprintln!` would be captured by the test harness
    // and never shown for a test that returns normally.
    let _ = writeln!(
        std::io::stderr(),
        "\n{banner}\nSKIPPED {test}: {reason}\n\
         (install Pebble with `apt-get install -y pebble`; .ci/run does)\n{banner}"
    );
    if std::env::var_os("VOBIZ_TUNNEL_REQUIRE_PEBBLE").is_some_and(|v| v == "1") {
        panic!("VOBIZ_TUNNEL_REQUIRE_PEBBLE=1 but {test} cannot run: {reason}");
    }
}

/// A port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PEBBLE") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("pebble"))
        .find(|candidate| candidate.is_file())
}

/// A running Pebble.
pub struct Pebble {
    child: Child,
    /// `https://127.0.0.1:<port>/dir`
    pub directory: String,
    pub management: SocketAddr,
    /// The CA of Pebble's own HTTPS certificate (what `--acme-directory-ca` gets).
    pub https_ca_file: PathBuf,
    https_ca: CertificateDer<'static>,
    log: PathBuf,
    _dns: Dns,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
    /// `Err` is the reason to skip.
    pub fn start(http_port: u16, tls_port: u16) -> Result<Pebble, String> {
        let binary = find_binary().ok_or("the `pebble` binary is not installed")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca = TestCa::new("Pebble HTTPS test CA");
        let leaf = ca.leaf(&["127.0.0.1", "localhost"], "pebble");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .map(|()| path)
                .map_err(|e| e.to_string())
        };
        let cert = write("pebble-cert.pem", &leaf.chain_pem)?;
        let key = write("pebble-key.pem", &leaf.key_pem)?;
        let https_ca_file = write("pebble-https-ca.pem", &ca.pem())?;
        let dns = Dns::start()?;
        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_file = write("pebble-config.json", &config.to_string())?;
        let log = dir.path().join("pebble.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let stderr = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&binary)
            .arg("-config")
            .arg(&config_file)
            .arg("-dnsserver")
            .arg(dns.addr.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let mut pebble = Pebble {
            child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            https_ca_file,
            https_ca: ca.der(),
            log,
            _dns: dns,
            _dir: dir,
        };
        pebble.wait_listening(&[listen, management])?;
        Ok(pebble)
    }

    fn wait_listening(&mut self, ports: &[u16]) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("pebble exited ({status}): {}", self.log_text()));
            }
            let up = ports.iter().all(|port| {
                let addr = SocketAddr::from(([127, 0, 0, 1], *port));
                StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            if up {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "pebble did not listen within 20 s: {}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pebble's output so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pebble's issuing root, from its management API (`GET /roots/0`); it is generated
    /// anew on every start.
    pub async fn root(&self) -> CertificateDer<'static> {
        let client = client_config(std::slice::from_ref(&self.https_ca), &[]);
        let fetch = async {
            let tcp = tokio::net::TcpStream::connect(self.management).await?;
            let name = ServerName::IpAddress(self.management.ip().into());
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await?;
            tls.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            // Go may end without close_notify; what was read is all we need.
            let _ = tls.read_to_end(&mut response).await;
            Ok::<_, std::io::Error>(response)
        };
        let response = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .expect("Pebble's management API answers within 10 s")
            .expect("Pebble's management API");
        // Pick the PEM out of the body, whatever the framing (chunked or not).
        let text = String::from_utf8_lossy(&response);
        let begin = text
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a PEM root");
        let end = text
            .find("-----END CERTIFICATE-----")
            .expect("a whole PEM root");
        let pem = &text[begin..end + "-----END CERTIFICATE-----".len()];
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("Pebble's root parses")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS responder for Pebble: every A question gets 127.0.0.1, every other question an
/// empty NOERROR answer. Runs on a thread until dropped.
struct Dns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Dns {
    fn start() -> Result<Dns, String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = dns_reply(&buf[..len]) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Ok(Dns { addr, stop })
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The answer to one query (RFC 1035 §4.1): header, the question echoed, and for type A
/// one record pointing back at the question's name (0xC00C).
fn dns_reply(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..at + 4)?;
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let answers: u16 = u16::from(qtype == 1);
    let mut reply = Vec::with_capacity(question.len() + 32);
    reply.extend_from_slice(&query[..2]); // id
    reply.extend_from_slice(&[0x84 | (query[2] & 0x01), 0x80]); // response, AA, RD copied, RA
    reply.extend_from_slice(&[0, 1, 0, answers as u8, 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if answers == 1 {
        reply.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(reply)
}
