//! The relay's `--cert/--key` files are reloaded when they change: over a real TLS listener
//! built by `relay_server_config`, new connections get the new certificate; files that are
//! garbage, half-written or mismatched never replace a good certificate; the running relay
//! says when it swapped one in.

#[path = "certs_support/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pki::{client_config, handshake, label, serve, wait_for, Leaf, TestCa};
use rustls::ClientConfig;
use vobiz_tunnel::relay::config::RelayCerts;
use vobiz_tunnel::tls::{relay_server_config, reload::POLL_EVERY};

/// A change must show within this: two polls plus slack for a loaded CI machine.
const RELOAD_LIMIT: Duration = Duration::from_secs(20);

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(first: &Leaf) -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = Files {
            cert: dir.path().join("fullchain.pem"),
            key: dir.path().join("privkey.pem"),
            _dir: dir,
        };
        files.write(first);
        files
    }

    /// Two plain writes, cert then key, as a careless deploy script would: in between the
    /// pair does not match, which must not matter.
    fn write(&self, leaf: &Leaf) {
        write(&self.cert, &leaf.chain_pem);
        write(&self.key, &leaf.key_pem);
    }

    fn certs(&self) -> RelayCerts {
        RelayCerts::Files {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

async fn shown(addr: std::net::SocketAddr, client: &Arc<ClientConfig>) -> Result<String, String> {
    handshake(addr, "localhost", client.clone())
        .await
        .map(|shown| label(&shown.leaf))
}

/// Waits for `expected` to be served to new connections.
async fn wait_served(addr: std::net::SocketAddr, client: &Arc<ClientConfig>, expected: &str) {
    wait_for(&format!("serving {expected}"), RELOAD_LIMIT, || async {
        match shown(addr, client).await? {
            label if label == expected => Ok(()),
            other => Err(format!("still serving {other}")),
        }
    })
    .await
}

/// Over several poll intervals, `expected` keeps being served.
async fn keeps_serving(addr: std::net::SocketAddr, client: &Arc<ClientConfig>, expected: &str) {
    for _ in 0..6 {
        tokio::time::sleep(POLL_EVERY / 2).await;
        assert_eq!(shown(addr, client).await.as_deref(), Ok(expected));
    }
}

#[tokio::test]
async fn replaced_files_reach_new_connections_and_garbage_never_does() {
    init();
    let ca = TestCa::new("reload test CA");
    let files = Files::new(&ca.leaf(&["localhost"], "first"));
    let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = relay_server_config(&files.certs(), alpn.clone())
        .await
        .expect("config from good files");
    assert_eq!(
        config.alpn_protocols, alpn,
        "the caller's ALPN list, nothing added"
    );
    let addr = serve(config).await;
    let client = client_config(&[ca.der()], &[b"h2", b"http/1.1"]);

    let first = handshake(addr, "localhost", client.clone())
        .await
        .expect("first handshake");
    assert_eq!(label(&first.leaf), "first");
    assert_eq!(first.alpn.as_deref(), Some(&b"h2"[..]));

    files.write(&ca.leaf(&["localhost"], "second"));
    wait_served(addr, &client, "second").await;

    write(
        &files.cert,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    write(&files.key, "not a key at all\n");
    keeps_serving(addr, &client, "second").await;

    // The watcher survived the garbage: a good pair is still picked up.
    files.write(&ca.leaf(&["localhost"], "third"));
    wait_served(addr, &client, "third").await;
}

#[tokio::test]
async fn half_written_and_mismatched_files_keep_the_old_certificate() {
    init();
    let ca = TestCa::new("reload test CA");
    let first = ca.leaf(&["localhost"], "first");
    let files = Files::new(&first);
    let config = relay_server_config(&files.certs(), vec![b"http/1.1".to_vec()])
        .await
        .expect("config from good files");
    let addr = serve(config).await;
    let client = client_config(&[ca.der()], &[b"http/1.1"]);
    assert_eq!(shown(addr, &client).await.as_deref(), Ok("first"));

    // A writer stopped halfway through the new chain: the leaf's PEM is cut short.
    let second = ca.leaf(&["localhost"], "second");
    write(&files.cert, &second.chain_pem[..second.chain_pem.len() / 3]);
    keeps_serving(addr, &client, "first").await;

    // The whole new chain, but the key is still the old one: they do not match.
    write(&files.cert, &second.chain_pem);
    keeps_serving(addr, &client, "first").await;

    // The key arrives: now the pair is good.
    write(&files.key, &second.key_pem);
    wait_served(addr, &client, "second").await;
}

#[tokio::test]
async fn unusable_files_fail_at_start_naming_the_problem() {
    init();
    let ca = TestCa::new("reload test CA");
    let files = Files::new(&ca.leaf(&["localhost"], "first"));
    let missing = RelayCerts::Files {
        cert: files.cert.with_file_name("missing.pem"),
        key: files.key.clone(),
    };
    let err = relay_server_config(&missing, Vec::new())
        .await
        .expect_err("missing file");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    write(&files.key, &ca.leaf(&["localhost"], "other").key_pem);
    let err = relay_server_config(&files.certs(), Vec::new())
        .await
        .expect_err("mismatch");
    assert!(
        err.to_string()
            .contains("do not go together: the key is not the one the certificate was issued for"),
        "{err}"
    );
    assert!(!err.to_string().contains("KeyMismatch"), "{err}");
}

#[tokio::test]
async fn dev_certificate_is_served_with_the_callers_alpn() {
    init();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = RelayCerts::Dev {
        dir: dir.path().to_path_buf(),
    };
    let config = relay_server_config(&certs, vec![b"http/1.1".to_vec()])
        .await
        .expect("dev config");
    let addr = serve(config).await;
    let dev_ca = std::fs::read(dir.path().join(vobiz_tunnel::tls::DEV_CA_FILE)).expect("dev CA");
    use rustls::pki_types::pem::PemObject;
    let root = rustls::pki_types::CertificateDer::from_pem_slice(&dev_ca).expect("dev CA PEM");
    let shown = handshake(addr, "localhost", client_config(&[root], &[b"http/1.1"]))
        .await
        .expect("handshake with the dev certificate");
    assert_eq!(shown.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn deleted_files_keep_the_old_certificate() {
    init();
    let ca = TestCa::new("reload test CA");
    let files = Files::new(&ca.leaf(&["localhost"], "first"));
    let config = relay_server_config(&files.certs(), Vec::new())
        .await
        .expect("config from good files");
    let addr = serve(config).await;
    let client = client_config(&[ca.der()], &[]);
    std::fs::remove_file(&files.cert).expect("remove cert");
    keeps_serving(addr, &client, "first").await;
    files.write(&ca.leaf(&["localhost"], "second"));
    wait_served(addr, &client, "second").await;
}

/// The operator learns from the relay's own output that the renewal was picked up.
#[tokio::test]
async fn the_relay_says_when_it_serves_a_new_certificate() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    init();
    let ca = TestCa::new("reload log CA");
    let files = Files::new(&ca.leaf(&["localhost"], "first"));
    let mut relay = Command::new(env!("CARGO_BIN_EXE_vobiz-tunnel"))
        .args(["relay", "--listen", "127.0.0.1:0", "--cert"])
        .arg(&files.cert)
        .arg("--key")
        .arg(&files.key)
        .env("VOBIZ_TUNNEL_RELAY_TOKEN", "reload-log-token-0123456789")
        .env_remove("VOBIZ_TUNNEL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let lines = |stream: Box<dyn std::io::Read + Send>| {
        let (sender, receiver) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        receiver
    };
    let stdout = lines(Box::new(relay.stdout.take().unwrap()));
    let stderr = lines(Box::new(relay.stderr.take().unwrap()));
    let started = stdout.recv_timeout(RELOAD_LIMIT).unwrap_or_default();
    assert!(started.contains("relay listening on"), "{started}");

    files.write(&ca.leaf(&["localhost"], "second"));
    let deadline = std::time::Instant::now() + RELOAD_LIMIT;
    let mut seen = Vec::new();
    let said = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) if line.contains("reloaded the certificate") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = relay.kill();
    let _ = relay.wait();
    let said = said.unwrap_or_else(|| panic!("no reload line; stderr: {seen:#?}"));
    assert!(said.contains("fullchain.pem"), "{said}");
}
