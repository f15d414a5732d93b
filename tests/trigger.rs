//! `vobiz-tunnel trigger`: every callback kind against a real upstream on loopback (fields,
//! byte order, signatures), through the listener (recorded as valid), the real binary's exit
//! statuses, and `trigger call` against a scripted Vobiz-XML server.

mod common;
#[path = "trigger/script.rs"]
mod script;

use clap::Parser;
use common::{raw_upstream, within, Reply, Seen, MAIN_TOKEN, TOKEN};
use vobiz_tunnel::cli::{Cli, Command};
use vobiz_tunnel::signature::{self, AuthToken, CallbackRequest, Keys, VerdictStatus};
use vobiz_tunnel::trigger::catalogue::Kind;

fn keys() -> Keys {
    Keys {
        auth_tokens: vec![AuthToken::new(TOKEN)],
        main_auth_tokens: vec![AuthToken::new(MAIN_TOKEN)],
    }
}

/// Runs `vobiz-tunnel trigger ...` in this process; returns the exit status.
async fn trigger_in_process(args: &[&str]) -> i32 {
    let mut argv = vec!["vobiz-tunnel", "trigger"];
    argv.extend_from_slice(args);
    let Some(Command::Trigger(args)) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not a trigger command");
    };
    within(vobiz_tunnel::trigger::trigger_command(&args))
        .await
        .unwrap()
}

/// Runs the real binary with a clean environment, in an empty folder (so the default
/// `certs` folder holds no dev CA, whatever `listen` wrote in the repository's); returns
/// (status, stdout, stderr).
async fn run_binary(args: &[&str]) -> (i32, String, String) {
    let folder = tempfile::tempdir().unwrap();
    let output = within(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_vobiz-tunnel"))
            .args(args)
            .current_dir(folder.path())
            .env_remove("VOBIZ_AUTH_TOKEN")
            .env_remove("VOBIZ_MAIN_AUTH_TOKEN")
            .env_remove("VOBIZ_TUNNEL_CERTS_DIR")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn form(seen: &Seen) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&seen.body).unwrap()
}

fn verdict(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> VerdictStatus {
    let request = CallbackRequest {
        method,
        url,
        headers,
        body,
        extra_ports: &[],
        other_urls: &[],
    };
    signature::verify(&request, &keys()).status
}

fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && parts[2].starts_with('4')
}

const EVENTS: &[(&str, &str)] = &[
    ("answer", "StartApp"),
    ("ring", "Ring"),
    ("hangup", "Hangup"),
    ("machine-detection", "MachineDetection"),
    ("dial-status", "DialHangup"),
    ("dial-action", "DialAction"),
    ("record", "Record"),
    ("record-callback", "RecordStop"),
    ("conference", "ConferenceEnter"),
    ("conference-sounds", "ConferenceRemoteSounds"),
    ("stream-status", "StartStream"),
    ("redirect", "Redirect"),
    ("transfer", "Transfer"),
];

#[tokio::test]
async fn every_kind_is_complete_sorted_and_signed() {
    let mut upstream = common::upstream(Reply::default()).await;
    for kind in Kind::ALL {
        let url = format!("{}/vobiz/{}", upstream.url(), kind.name());
        let code = trigger_in_process(&[
            kind.name(),
            "--to",
            &url,
            "--auth-token",
            TOKEN,
            "--main-auth-token",
            MAIN_TOKEN,
        ])
        .await;
        assert_eq!(code, 0, "{kind:?}");
        let seen = upstream.next().await;
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.header("user-agent"), Some("Vobiz"));
        assert_eq!(
            seen.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(seen.header("accept"), Some("*/*"));
        for nonce in ["x-vobiz-signature-v2-nonce", "x-vobiz-signature-v3-nonce"] {
            let n = seen.header(nonce).unwrap();
            assert!(
                n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()),
                "{n}"
            );
        }
        assert!(seen.header("x-vobiz-signature-ma-v3").is_some());
        let fields = form(&seen);
        let keys: Vec<&[u8]> = fields.iter().map(|(k, _)| k.as_bytes()).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{kind:?}: {keys:?}");
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        if kind == Kind::RecordApi {
            assert!(is_uuid_v4(get("call_uuid").unwrap()));
            assert!(get("record_url").is_some() && get("recording_id").is_some());
        } else if kind != Kind::Transcription {
            assert!(is_uuid_v4(get("CallUUID").unwrap()), "{kind:?}");
            assert!(get("From").unwrap().starts_with("91"));
            assert!(get("Direction").is_some() && get("CallStatus").is_some());
        } else {
            assert!(get("transcription").is_some() && get("recording_id").is_some());
        }
        if let Some((_, event)) = EVENTS.iter().find(|(n, _)| *n == kind.name()) {
            assert_eq!(get("Event"), Some(*event), "{kind:?}");
        }
        if kind == Kind::Hangup {
            for k in [
                "Duration",
                "BillDuration",
                "HangupCause",
                "HangupCauseCode",
                "StartTime",
                "AnswerTime",
                "EndTime",
                "TotalCost",
            ] {
                assert!(get(k).is_some(), "Hangup lacks {k}");
            }
            // The call is over by now: it ended at the latest when the callback was sent.
            let now = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+5:30));
            let format =
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            let now = now.format(&format).unwrap();
            let end = get("EndTime").unwrap();
            assert!(
                end <= now.as_str(),
                "EndTime {end} is after now ({now}, India)"
            );
            assert!(get("StartTime").unwrap() < end);
        }
        if let Some((start, end, duration)) = match kind {
            Kind::RecordCallback => {
                Some(("RecordingStartMs", "RecordingEndMs", "RecordingDurationMs"))
            }
            Kind::RecordApi => Some((
                "recording_start_ms",
                "recording_end_ms",
                "recording_duration_ms",
            )),
            _ => None,
        } {
            // Vobiz reports a recording once it is over: it ended by the time of sending.
            let ms = |k: &str| get(k).unwrap().parse::<u64>().unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            assert!(
                ms(end) <= now,
                "{kind:?}: {end} {} is after now ({now})",
                ms(end)
            );
            assert_eq!(ms(start) + ms(duration), ms(end), "{kind:?}");
        }
        if kind == Kind::Ring {
            // ring_url exists only on calls placed with the Make Call API.
            assert_eq!(get("Direction"), Some("outbound"));
            assert!(get("RequestUUID").is_some() && get("ALegRequestUUID").is_some());
        }
        if kind == Kind::Gather {
            assert_eq!(get("Digits"), Some("1"));
        }
        assert_eq!(
            verdict("POST", &url, &seen.headers, &seen.body),
            VerdictStatus::Valid,
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn every_kind_through_the_listener_is_recorded_valid() {
    let upstream = common::upstream(Reply::default()).await;
    let harness = common::Harness::with_forward(&upstream.url()).await;
    let certs = harness.dir.path().join("certs");
    for kind in Kind::ALL {
        let url = harness.url(&format!("/vobiz/{}", kind.name()));
        let code = trigger_in_process(&[
            kind.name(),
            "--to",
            &url,
            "--certs-dir",
            certs.to_str().unwrap(),
            "--auth-token",
            TOKEN,
            "--main-auth-token",
            MAIN_TOKEN,
        ])
        .await;
        assert_eq!(code, 0, "{kind:?}");
        let exchange = harness.last_recorded().await;
        assert_eq!(exchange.request.target, format!("/vobiz/{}", kind.name()));
        assert_eq!(exchange.verdict.status, VerdictStatus::Valid, "{kind:?}");
    }
}

#[path = "trigger/binary.rs"]
mod binary;
#[path = "trigger/call.rs"]
mod call;
#[path = "trigger/tls.rs"]
mod tls;

/// On the wire, header names are spelled as Vobiz spells them, `-MA-` included.
#[tokio::test]
async fn header_names_go_out_as_vobiz_spells_them() {
    let (url, received) = raw_upstream().await;
    let to = format!("{url}/vobiz/hangup");
    let code = trigger_in_process(&[
        "hangup",
        "--to",
        &to,
        "--auth-token",
        TOKEN,
        "--main-auth-token",
        MAIN_TOKEN,
    ])
    .await;
    assert_eq!(code, 0);
    let raw = within(received).await.unwrap();
    let head = String::from_utf8_lossy(&raw);
    for name in [
        "\r\nUser-Agent: Vobiz\r\n",
        "\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        "\r\nX-Vobiz-Signature-V3: ",
        "\r\nX-Vobiz-Signature-V3-Nonce: ",
        "\r\nX-Vobiz-Signature-MA-V3: ",
        "\r\nX-Vobiz-Signature-MA-V2: ",
    ] {
        assert!(head.contains(name), "{name:?} in {head}");
    }
}

/// The verdict line reads apart from an answer that is itself the text `ok`.
#[tokio::test]
async fn the_verdict_is_told_apart_from_the_answer() {
    let upstream = common::upstream(Reply {
        content_type: "text/plain",
        body: "ok",
        ..Reply::default()
    })
    .await;
    let to = format!("{}/vobiz/hangup", upstream.url());
    let (code, out, err) = run_binary(&["trigger", "hangup", "--to", &to]).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        ["ok", "OK: Vobiz would accept this answer"],
        "{out}"
    );
}

/// `--from` takes an E.164 number with or without its `+` and sends it as Vobiz does (`From`
/// without, `CallerName` with); what is not a number is refused before anything is sent.
#[test]
fn call_numbers_are_read_as_vobiz_writes_them() {
    let parsed = |args: &[&str]| {
        let argv = [
            "vobiz-tunnel",
            "trigger",
            "call",
            "--answer-url",
            "http://127.0.0.1:1/a",
        ];
        Cli::try_parse_from(argv.iter().chain(args))
    };
    let Some(Command::Trigger(trigger)) = parsed(&["--from", "+919876543210"]).unwrap().command
    else {
        panic!("a trigger command");
    };
    let vobiz_tunnel::cli::TriggerKind::Call(call) = &trigger.kind else {
        panic!("trigger call");
    };
    assert_eq!(call.from, "919876543210");
    let facts =
        vobiz_tunnel::trigger::catalogue::CallFacts::new(&call.from, &call.to_number, "inbound");
    let fields =
        vobiz_tunnel::trigger::catalogue::fields(Kind::Answer, &facts, &Default::default());
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("From").as_deref(), Some("919876543210"));
    assert_eq!(field("CallerName").as_deref(), Some("+919876543210"));
    for bad in ["abc", "+91 98765", "12"] {
        let error = parsed(&["--to-number", bad]).unwrap_err().to_string();
        assert!(error.contains("is not a phone number"), "{bad}: {error}");
    }
}
