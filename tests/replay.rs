//! Replay from the command line and through the library: as-is, re-signed, edited, to another
//! target. Each replay is a new exchange linked to its original, which never changes.

mod common;

use tokio::process::Command;

use bytes::Bytes;
use common::*;
use vobiz_tunnel::exchange::{Flag, Outcome};
use vobiz_tunnel::replay::{parse_raw, to_raw, ReplayPlan, Replayer};
use vobiz_tunnel::signature::VerdictStatus;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");

/// Records one signed Hangup through a real listener; returns the harness and its id.
async fn recorded_callback(upstream: &mut Upstream) -> (Harness, i64) {
    let harness = Harness::with_forward(&upstream.url()).await;
    let url = harness.url("/vobiz/hangup");
    let request = form_post(
        &harness,
        "/vobiz/hangup",
        HANGUP_BODY,
        &vobiz_headers(&url, TOKEN, None),
    );
    assert_eq!(harness.client().send(request).await.status, 200);
    upstream.next().await;
    let id = harness.last_recorded().await.id.unwrap();
    (harness, id)
}

/// Runs `vobiz-tunnel replay` without blocking the runtime the fixtures live on.
async fn replay_cli(harness: &Harness, args: &[&str], token: bool) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("replay")
        .args(args)
        .args(["--store", harness.config.store.to_str().unwrap()])
        .args([
            "--certs-dir",
            harness.dir.path().join("certs").to_str().unwrap(),
        ])
        .env_remove("VOBIZ_AUTH_TOKEN")
        .env_remove("VOBIZ_TUNNEL_FORWARD");
    if token {
        command.env("VOBIZ_AUTH_TOKEN", TOKEN);
    }
    let output = within(command.output()).await.unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn as_is_replay_sends_the_same_bytes_and_is_flagged_as_a_reused_nonce() {
    let mut upstream = upstream(Reply::default()).await;
    let (harness, original_id) = recorded_callback(&mut upstream).await;
    let original = harness.recorded(original_id).await;

    let (code, out, err) = replay_cli(
        &harness,
        &[&original_id.to_string(), "--forward", &upstream.url()],
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("(replay of #{original_id})")),
        "{out}"
    );
    let seen = upstream.next().await;
    assert_eq!(seen.body, Bytes::from(HANGUP_BODY));
    for name in [
        "x-vobiz-signature-v3",
        "x-vobiz-signature-v3-nonce",
        "x-vobiz-signature-v2",
    ] {
        assert_eq!(
            seen.header(name).map(str::as_bytes),
            original.request.headers.get(name),
            "{name} is sent unchanged"
        );
    }
    let replay = harness.last_recorded().await;
    assert_eq!(replay.replay_of, Some(original_id));
    assert!(replay.has_flag(Flag::Replay));
    assert!(
        replay.has_flag(Flag::NonceReused),
        "same nonce: {:?}",
        replay.flags
    );
    assert_eq!(replay.nonce_reused_of, Some(original_id));
    assert_eq!(replay.status(), Some(200));
    assert_eq!(
        harness.recorded(original_id).await,
        original,
        "the original never changes"
    );
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn resigned_replay_carries_fresh_valid_signatures() {
    let mut upstream = upstream(Reply::default()).await;
    let (harness, original_id) = recorded_callback(&mut upstream).await;
    let original = harness.recorded(original_id).await;

    let (code, out, err) = replay_cli(
        &harness,
        &[
            &original_id.to_string(),
            "--resign",
            "--forward",
            &upstream.url(),
        ],
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let seen = upstream.next().await;
    let nonce = seen
        .header("x-vobiz-signature-v3-nonce")
        .unwrap()
        .to_string();
    assert_ne!(
        Some(nonce.as_bytes()),
        original.request.headers.get("x-vobiz-signature-v3-nonce")
    );
    assert_eq!(nonce.len(), 20);
    // Checked independently of the crate: HMAC-SHA256(token, public URL + "." + nonce).
    let expected = vobiz_headers_fresh_with_nonce(&harness.url("/vobiz/hangup"), &nonce);
    assert_eq!(seen.header("x-vobiz-signature-v3"), Some(expected.as_str()));
    assert_eq!(seen.body, Bytes::from(HANGUP_BODY));
    assert!(
        seen.header("x-vobiz-signature").is_none(),
        "no legacy V1 header the original did not have"
    );
    assert!(
        seen.header("x-vobiz-signature-ma-v3").is_none(),
        "nor -MA- ones"
    );

    let replay = harness.last_recorded().await;
    assert_eq!(
        replay.verdict.status,
        VerdictStatus::Valid,
        "{:?}",
        replay.verdict
    );
    assert!(!replay.has_flag(Flag::NonceReused));
    harness.tunnel.shutdown().await;
}

fn vobiz_headers_fresh_with_nonce(url: &str, nonce: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(format!("{url}.{nonce}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn resigning_without_a_token_is_a_clear_error() {
    let mut upstream = upstream(Reply::default()).await;
    let (harness, id) = recorded_callback(&mut upstream).await;
    let (code, _, err) = replay_cli(
        &harness,
        &[&id.to_string(), "--resign", "--forward", &upstream.url()],
        false,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("VOBIZ_AUTH_TOKEN"), "{err}");
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn replay_to_another_target_goes_there() {
    let mut first = upstream(Reply::default()).await;
    let mut second = upstream(Reply::default()).await;
    let (harness, id) = recorded_callback(&mut first).await;
    let (code, out, err) = replay_cli(
        &harness,
        &[
            &id.to_string(),
            "--forward",
            &first.url(),
            "--to",
            &format!("{}/staging", second.url()),
        ],
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim_end()
            .ends_with(&format!("→ {}/staging/vobiz/hangup", second.url())),
        "the line says where it went: {out}"
    );
    assert_eq!(second.next().await.uri, "/staging/vobiz/hangup");
    first
        .assert_nothing(std::time::Duration::from_millis(200))
        .await;
    // The row says so too, for `show` and the inspector long after.
    let replay = harness.last_recorded().await;
    let sent_to = format!("{}/staging/vobiz/hangup", second.url());
    assert_eq!(replay.sent_to.as_deref(), Some(sent_to.as_str()));
    let shown = vobiz_tunnel::report::exchange_text(&replay, time::UtcOffset::UTC);
    assert!(
        shown.contains(&format!("(replay of #{id}, sent to {sent_to})")),
        "{shown}"
    );
    assert_eq!(
        vobiz_tunnel::report::exchange_json(&replay)["sent_to"],
        sent_to.as_str()
    );
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn a_failed_replay_is_recorded_and_exits_one() {
    let mut upstream = upstream(Reply::default()).await;
    let (harness, id) = recorded_callback(&mut upstream).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, _) = replay_cli(
        &harness,
        &[&id.to_string(), "--forward", &format!("http://{dead}")],
        true,
    )
    .await;
    assert_eq!(code, 1, "{out}");
    let replay = harness.last_recorded().await;
    assert_eq!(replay.status(), Some(502));
    assert!(replay.has_flag(Flag::UpstreamError));
    let (code, _, err) = replay_cli(&harness, &["999", "--forward", &upstream.url()], true).await;
    assert_eq!(code, 1);
    assert!(err.contains("no exchange #999"), "{err}");
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn an_edited_request_is_sent_as_saved_and_can_be_resigned() {
    let mut upstream = upstream(Reply::default()).await;
    let (harness, id) = recorded_callback(&mut upstream).await;
    let original = harness.recorded(id).await;
    let raw = String::from_utf8(to_raw(&original.request)).unwrap();
    let edited_text = raw
        .replace("POST /vobiz/hangup", "POST /vobiz/hangup2")
        .replace("HangupCause=NORMAL_CLEARING", "HangupCause=USER_BUSY");
    let edited = parse_raw(edited_text.as_bytes()).unwrap();

    let replayer = Replayer {
        store: harness.tunnel.store.clone(),
        upstream: vobiz_tunnel::forward::Upstream::new(
            parse_base(&upstream.url()),
            vobiz_tunnel::cli::HostHeader::Keep,
            std::time::Duration::from_secs(5),
            1 << 20,
            vobiz_tunnel::tls::client_config(&[], &[]),
        ),
        keys: harness.config.keys.clone(),
        public_url: None,
        events: Some(harness.tunnel.events.clone()),
        timeout: std::time::Duration::from_secs(5),
        tls: vobiz_tunnel::tls::client_config(&[], &[]),
    };
    let plan = ReplayPlan {
        resign: true,
        edited: Some(edited),
        ..ReplayPlan::default()
    };
    let replay = within(replayer.replay(&original, &plan)).await.unwrap();
    let seen = upstream.next().await;
    assert_eq!(seen.uri, "/vobiz/hangup2");
    assert!(String::from_utf8_lossy(&seen.body).contains("HangupCause=USER_BUSY"));
    assert_eq!(
        seen.body.len(),
        HANGUP_BODY.len() - "NORMAL_CLEARING".len() + "USER_BUSY".len()
    );
    assert_eq!(
        replay.verdict.status,
        VerdictStatus::Valid,
        "re-signed for the new path"
    );
    assert_eq!(replay.request.public_url, harness.url("/vobiz/hangup2"));
    let stored = harness.recorded(replay.id.unwrap()).await;
    assert_eq!(stored.replay_of, Some(id));
    // The record says what was sent: the edited body's length, not the original's.
    let length = stored.request.headers.get_str("content-length");
    assert_eq!(length, Some(seen.body.len().to_string().as_str()));
    assert_eq!(seen.header("content-length"), length);
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn a_bulk_replay_by_filter_goes_in_order() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    for (path, event) in [("/a", "Ring"), ("/b", "Hangup"), ("/c", "Ring")] {
        let body = format!("Event={event}&CallUUID=x");
        harness
            .client()
            .send(form_post(&harness, path, &body, &[]))
            .await;
        upstream.next().await;
    }
    harness.last_recorded().await;
    let (code, out, err) = replay_cli(
        &harness,
        &["--filter", "event:Ring", "--forward", &upstream.url()],
        true,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(upstream.next().await.uri, "/a");
    assert_eq!(upstream.next().await.uri, "/c");
    upstream
        .assert_nothing(std::time::Duration::from_millis(200))
        .await;
    assert_eq!(out.lines().count(), 2, "{out}");
    let (code, _, err) = replay_cli(
        &harness,
        &["--filter", "bogus:1", "--forward", &upstream.url()],
        true,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("bogus"), "{err}");

    // An empty filter would replay the whole store: refused. No match is a failure too.
    for (filter, says) in [(" ", "an empty --filter"), ("id:999", "nothing to replay")] {
        let (code, _, err) = replay_cli(
            &harness,
            &["--filter", filter, "--forward", &upstream.url()],
            true,
        )
        .await;
        assert_eq!(code, 1, "{filter:?}: {err}");
        assert!(err.contains(says), "{err}");
    }
    upstream.assert_nothing(std::time::Duration::ZERO).await;
    harness.tunnel.shutdown().await;
}

/// A request that was not received whole (over `--max-body`), or was refused as invalid
/// HTTP, is not replayed as recorded: it would be another request under its name. The rest
/// of a bulk replay still goes, and the exit status says one did not.
#[tokio::test]
async fn a_request_not_received_whole_is_not_replayed_as_if_it_were() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, &upstream.url());
    config.limits.max_body_bytes = 1000;
    let harness = Harness::start(config, dir).await;
    let small = harness
        .client()
        .send(form_post(
            &harness,
            "/whole",
            "Event=Hangup&CallUUID=w",
            &[],
        ))
        .await;
    assert_eq!(small.status, 200);
    upstream.next().await;
    let big = format!("Event=Hangup&Pad={}", "x".repeat(5000));
    let answer = harness
        .client()
        .send(form_post(&harness, "/too-big", &big, &[]))
        .await;
    assert_eq!(answer.status, 413);
    harness.last_recorded().await;
    let (code, out, err) = replay_cli(
        &harness,
        &["--filter", "id:1..2", "--forward", &upstream.url()],
        true,
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("cannot be replayed as recorded: its body was not received whole"),
        "{err}"
    );
    assert_eq!(
        upstream.next().await.uri,
        "/whole",
        "the whole one still goes"
    );
    upstream
        .assert_nothing(std::time::Duration::from_millis(200))
        .await;
    assert_eq!(out.lines().count(), 1, "{out}");

    // As JSON lines, the refusal is one of them: a line for every exchange selected.
    let (code, out, _) = replay_cli(
        &harness,
        &[
            "--filter",
            "id:1..2",
            "--json",
            "--forward",
            &upstream.url(),
        ],
        true,
    )
    .await;
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["replay_of"], 1);
    assert!(lines[0]["id"].is_i64(), "{out}");
    assert_eq!(lines[1]["replay_of"], 2);
    assert_eq!(lines[1]["id"], serde_json::Value::Null);
    assert!(
        lines[1]["refused"]
            .as_str()
            .unwrap()
            .contains("its body was not received whole"),
        "{out}"
    );
    upstream.next().await;
    harness.tunnel.shutdown().await;
}

/// A replay still waiting for the local server when it is stopped (the inspector quit, the
/// runtime went away) ends its row with the reason, rather than leave it `pending` with no
/// word of why.
#[tokio::test]
async fn a_replay_stopped_before_its_answer_says_so_in_its_row() {
    let mut upstream = upstream(Reply::default()).await;
    let (harness, id) = recorded_callback(&mut upstream).await;
    let original = harness.recorded(id).await;
    // A local server that takes the request and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let (reached, mut arrival) = tokio::sync::mpsc::unbounded_channel();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
            let _ = reached.send(());
        }
    });
    let replayer = Replayer {
        store: harness.tunnel.store.clone(),
        upstream: vobiz_tunnel::forward::Upstream::new(
            parse_base(&silent_url),
            vobiz_tunnel::cli::HostHeader::Keep,
            std::time::Duration::from_secs(60),
            1 << 20,
            vobiz_tunnel::tls::client_config(&[], &[]),
        ),
        keys: harness.config.keys.clone(),
        public_url: None,
        events: None,
        timeout: std::time::Duration::from_secs(60),
        tls: vobiz_tunnel::tls::client_config(&[], &[]),
    };
    let replaying = tokio::spawn(async move {
        let _ = replayer.replay(&original, &ReplayPlan::default()).await;
    });
    // Stopped while the local server holds the request (its row was written before).
    within(arrival.recv()).await;
    let replay_id = within(async {
        loop {
            let latest = harness.reader().latest(1).unwrap();
            if let Some(replay_id) = latest.first().and_then(|row| row.id).filter(|&n| n != id) {
                return replay_id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    replaying.abort();
    let _ = replaying.await;
    harness.tunnel.store.flush().await;
    let row = harness.reader().get(replay_id).unwrap().unwrap();
    assert_eq!(row.replay_of, Some(id));
    assert_eq!(
        row.error.as_deref(),
        Some("vobiz-tunnel stopped before the local server answered this replay")
    );
    assert_eq!(row.outcome, Outcome::UpstreamError, "ended, not pending");
    assert!(row.has_flag(Flag::UpstreamError));
    assert!(row.timings.done_us.is_some() && row.response.is_none());
    held.abort();
    harness.tunnel.shutdown().await;
}
