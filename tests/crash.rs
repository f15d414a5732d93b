//! Crash safety: the process is killed with SIGKILL in the middle of sustained load; every
//! request that got an answer before the kill is in the store, which opens cleanly, and the
//! tool starts again on it.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");

/// Starts `vobiz-tunnel listen` and returns the child and its address.
fn start(
    store: &std::path::Path,
    certs: &std::path::Path,
    forward: &str,
) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--no-tui",
            "--log-format",
            "json",
        ])
        .args(["--forward", forward])
        .args(["--store", store.to_str().unwrap()])
        .args(["--certs-dir", certs.to_str().unwrap()])
        .env_remove("VOBIZ_AUTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the listening line");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = value["url"].as_str().unwrap().to_string();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (child, url.trim_start_matches("https://").parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_request_survives_a_sigkill() {
    let mut upstream = upstream(Reply::default()).await;
    let forward = upstream.url();
    // The fixture reports each request on a channel; drain it so it never fills.
    tokio::spawn(async move { while upstream.seen.recv().await.is_some() {} });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let certs = dir.path().join("certs");
    let (mut child, addr) = start(&store, &certs, &forward);

    // Sustained load from 8 senders; each remembers which callbacks were answered.
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..8u32 {
        let (answered, stop, ca) = (answered.clone(), stop.clone(), certs.join("dev-ca.pem"));
        senders.push(tokio::spawn(async move {
            let client = TlsClient::new(addr, ca);
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let call = format!("crash-{sender}-{n}");
                n += 1;
                let request = Request::post("/vobiz/hangup")
                    .header("host", format!("localhost:{}", addr.port()))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(format!(
                        "CallUUID={call}&Event=Hangup"
                    ))))
                    .unwrap();
                // A request cut by the kill may fail or hang: only answered ones count.
                match tokio::time::timeout(Duration::from_secs(2), client.try_send(request)).await {
                    Ok(Some(200)) => {
                        answered.lock().unwrap().insert(call);
                    }
                    _ => break,
                }
            }
        }));
    }
    let started = Instant::now();
    while answered.lock().unwrap().len() < 200 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for sender in senders {
        let _ = within(sender).await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 200,
        "load ran: {} answered",
        answered.len()
    );

    // The store opens cleanly and holds every answered callback.
    let reader =
        vobiz_tunnel::store::StoreReader::open(&store).expect("the store opens after SIGKILL");
    let ids = reader
        .ids_matching(&vobiz_tunnel::filter::Filter::default())
        .unwrap();
    let mut stored = HashSet::new();
    for id in ids {
        if let Some(exchange) = reader.get(id).unwrap() {
            if let Some(call) = exchange.call_uuid {
                stored.insert(call);
            }
        }
    }
    let missing: Vec<_> = answered.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} answered callbacks missing from the store: {missing:?}",
        missing.len()
    );
    drop(reader);

    // And the tool starts again on the same store.
    let (mut again, _) = start(&store, &certs, &forward);
    let _ = again.kill();
    let _ = again.wait();
}

/// The exchanges of the store, as `list` reads them.
fn stored(store: &std::path::Path) -> Vec<vobiz_tunnel::exchange::Exchange> {
    let reader = vobiz_tunnel::store::StoreReader::open(store).unwrap();
    let ids = reader
        .ids_matching(&vobiz_tunnel::filter::Filter::default())
        .unwrap();
    ids.into_iter()
        .filter_map(|id| reader.get(id).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_in_flight_at_a_sigkill_is_flagged_interrupted_by_the_next_lone_run() {
    use vobiz_tunnel::exchange::{Flag, Outcome};
    // The local server never answers in time: the callback is in flight when the kill comes.
    let hanging = upstream(Reply {
        delay: Duration::from_secs(120),
        ..Reply::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let certs = dir.path().join("certs");
    let (mut first, addr) = start(&store, &certs, &hanging.url());
    let ca = certs.join("dev-ca.pem");
    let in_flight = tokio::spawn(async move {
        let request = Request::post("/vobiz/hangup")
            .header("host", format!("localhost:{}", addr.port()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(
                "CallUUID=killed-mid-call&Event=Hangup",
            )))
            .unwrap();
        TlsClient::new(addr, ca).try_send(request).await
    });
    // Written as pending once the local server is slow to answer.
    within(async {
        while !stored(&store).iter().any(|e| e.outcome == Outcome::Pending) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A second listener on the same store while the first runs: that row may be in flight.
    let (mut second, _) = start(&store, &certs, &hanging.url());
    let rows = stored(&store);
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].has_flag(Flag::Interrupted), "{:?}", rows[0]);

    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let _ = within(in_flight).await;
    second.kill().expect("SIGKILL");
    let _ = second.wait();
    assert!(!stored(&store)[0].has_flag(Flag::Interrupted));

    // The next run is the store's only writer: the row is an orphan and says so.
    let (mut third, _) = start(&store, &certs, &hanging.url());
    let rows = stored(&store);
    assert_eq!(rows.len(), 1);
    let orphan = &rows[0];
    assert_eq!(orphan.call_uuid.as_deref(), Some("killed-mid-call"));
    assert_eq!(orphan.outcome, Outcome::Pending);
    assert!(orphan.has_flag(Flag::Interrupted), "{orphan:?}");
    let error = orphan.error.as_deref().unwrap_or_default();
    assert!(error.contains("stopped (killed or crashed)"), "{error}");
    let _ = third.kill();
    let _ = third.wait();
}
