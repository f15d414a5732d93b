//! `vobiz-tunnel trigger`: send a synthetic Vobiz callback, signed as Vobiz signs it, to any
//! URL (the tunnel, or the local server directly), or simulate a whole call by following the
//! Vobiz XML the server answers ([`call`]).
//!
//! ```text
//! vobiz-tunnel trigger hangup --to https://localhost:8443/vobiz/hangup
//! vobiz-tunnel trigger answer --to http://localhost:3000/answer --param From=919876543210 --method GET
//! vobiz-tunnel trigger call --answer-url https://localhost:8443/answer --digits 1 --speech "yes"
//! ```
//!
//! Exit status: 0 when the server handled the callback as Vobiz needs (2xx, within 3 s, valid
//! XML where XML is expected), 1 otherwise. With `--unsigned` or `--bad-signature` the
//! callback is a forgery and the test is the other way round: 0 when the server refuses it
//! (4xx), 1 when it accepts it or fails.

pub mod call;
mod call_steps;
pub mod call_xml;
pub mod catalogue;
mod fields;
pub mod no_answer;
mod public_origin;
pub mod send;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::checks::Severity;
use crate::cli::{TriggerArgs, TriggerCommon, TriggerKind, TriggerOneArgs};
use crate::config::BaseUrl;
use crate::output::say;
use crate::signature::SigningKeys;
use catalogue::{CallFacts, Kind, Step, StreamEcho};
use no_answer::Trust;
use send::{Callback, Forgery, Judgement, Sender, Signing};

/// Runs `trigger`; returns the exit status.
pub async fn trigger_command(args: &TriggerArgs) -> anyhow::Result<i32> {
    let (kind, one) = match &args.kind {
        TriggerKind::Call(call_args) => return call::call_command(call_args).await,
        TriggerKind::Answer(a) => (Kind::Answer, a),
        TriggerKind::Ring(a) => (Kind::Ring, a),
        TriggerKind::Hangup(a) => (Kind::Hangup, a),
        TriggerKind::MachineDetection(a) => (Kind::MachineDetection, a),
        TriggerKind::Gather(a) => (Kind::Gather, a),
        TriggerKind::GatherInterim(a) => (Kind::GatherInterim, a),
        TriggerKind::DialStatus(a) => (Kind::DialStatus, a),
        TriggerKind::DialAction(a) => (Kind::DialAction, a),
        TriggerKind::Record(a) => (Kind::Record, a),
        TriggerKind::RecordCallback(a) => (Kind::RecordCallback, a),
        TriggerKind::Transcription(a) => (Kind::Transcription, a),
        TriggerKind::RecordApi(a) => (Kind::RecordApi, a),
        TriggerKind::Conference(a) => (Kind::Conference, a),
        TriggerKind::ConferenceSounds(a) => (Kind::ConferenceSounds, a),
        TriggerKind::StreamStatus(a) => (Kind::StreamStatus, a),
        TriggerKind::Redirect(a) => (Kind::Redirect, a),
        TriggerKind::Transfer(a) => (Kind::Transfer, a),
    };
    trigger_one(kind, one).await
}

/// The sender for the shared options: signing mode, trusted roots, timeout. Says on stderr
/// when no token is configured (the callback then goes unsigned), which token signs of
/// several, and when a certificate folder given holds no dev CA.
pub fn sender(common: &TriggerCommon) -> anyhow::Result<Sender> {
    let keys = crate::config::keys(&(&common.tokens).into())?;
    if !common.unsigned && !common.bad_signature {
        note_unused_tokens(&keys);
    }
    let signing = if common.unsigned {
        Signing::Forged(Forgery::Unsigned)
    } else if common.bad_signature {
        Signing::Forged(Forgery::BadSignature)
    } else if let Some(auth) = keys.auth_tokens.first() {
        Signing::Signed(SigningKeys {
            auth_token: auth.clone(),
            main_auth_token: keys.main_auth_tokens.first().cloned(),
        })
    } else {
        // Vobiz signs V2/V3 with the account's own token; the -MA- headers only come with
        // them, for a sub-account's callbacks.
        let main_only = match keys.main_auth_tokens.is_empty() {
            true => "",
            false => {
                " (a main-account token alone signs nothing: -MA- headers come with the \
                       sub-account's V2/V3)"
            }
        };
        eprintln!(
            "vobiz-tunnel: no auth token (set VOBIZ_AUTH_TOKEN or --auth-token){main_only}: \
             sending unsigned"
        );
        Signing::Unsigned
    };
    let max = crate::config::MAX_SECONDS;
    if !(common.timeout > 0.0 && common.timeout <= max) {
        bail!("--timeout must be a positive number of seconds, at most {max}");
    }
    // Not given, the folder is where `listen` writes it by default; trigger is often run
    // elsewhere, which the explanation of an untrusted certificate then says.
    let certs_dir = common
        .certs_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CERTS_DIR));
    let trust = Trust::new(certs_dir.join(crate::tls::DEV_CA_FILE));
    if let (Some(given), false) = (&common.certs_dir, common.insecure) {
        warn_without_dev_ca(given, &trust);
    }
    Ok(Sender::new(
        signing,
        trust,
        common.insecure,
        Duration::from_secs_f64(common.timeout),
    ))
}

/// Where `listen` writes its certificates unless told otherwise.
const DEFAULT_CERTS_DIR: &str = "certs";

/// Says on stderr when the certificate folder given has no dev CA to trust: else a typo in
/// --certs-dir shows only later, as an untrusted certificate.
fn warn_without_dev_ca(given: &Path, trust: &Trust) {
    if trust.dev_ca_found {
        return;
    }
    let problem = match given.is_dir() {
        false => "does not exist".to_owned(),
        true => format!("has no dev CA ({})", trust.dev_ca.display()),
    };
    eprintln!(
        "vobiz-tunnel: warning: the certificate folder {} (--certs-dir or \
         VOBIZ_TUNNEL_CERTS_DIR) {problem}: only publicly trusted certificates will be \
         accepted; give the folder where `listen` wrote its certificates",
        given.display()
    );
}

/// Says on stderr which token signs when several are configured: the same variables serve
/// `listen`, which accepts several during a rotation, but a callback carries one signature.
fn note_unused_tokens(keys: &crate::signature::Keys) {
    for (tokens, which) in [
        (&keys.auth_tokens, "auth tokens"),
        (&keys.main_auth_tokens, "main-account auth tokens"),
    ] {
        if let [first, _, ..] = tokens.as_slice() {
            eprintln!(
                "vobiz-tunnel: signing with the first of {} {which} ({first}); the others are not used",
                tokens.len()
            );
        }
    }
}

/// Applies `--param K=V` overrides: an existing key gets the value, a new key is added in
/// byte order (where Vobiz would have put it).
pub fn apply_params(fields: &mut Vec<(String, String)>, params: &[String]) -> anyhow::Result<()> {
    for param in params {
        let (key, value) = param
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .with_context(|| format!("--param {param:?}: expected KEY=VALUE"))?;
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(field) => field.1 = value.to_owned(),
            None => {
                let at = fields.partition_point(|(k, _)| k.as_bytes() <= key.as_bytes());
                fields.insert(at, (key.to_owned(), value.to_owned()));
            }
        }
    }
    Ok(())
}

fn check_url(flag: &str, url: &str) -> anyhow::Result<()> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("{flag} {url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.authority().is_some() => Ok(()),
        _ => bail!("{flag} {url:?}: expected http(s)://host[:port]/path"),
    }
}

/// The URL a single callback is signed for: `--public-url` as given when it has a path; a
/// bare origin (`https://hooks.example.com`) is joined with the path and query of `--to` the
/// way `listen --public-url` joins it with a request's ([`BaseUrl::join`]), so the two agree.
fn signed_url(to: &str, public_url: Option<&str>) -> String {
    let Some(public) = public_url else {
        return to.to_owned();
    };
    let origin = BaseUrl::parse(public)
        .ok()
        .filter(|base| base.prefix.is_empty() && !public.ends_with('/'));
    let target = to.parse::<hyper::Uri>().ok().and_then(|uri| {
        uri.path_and_query()
            .map(|target| target.as_str().to_owned())
    });
    match (origin, target) {
        (Some(origin), Some(target)) => origin.join(&target),
        _ => public.to_owned(),
    }
}

/// The `<Stream>` URL of a single stream-status callback, which has no XML to take it from:
/// a WebSocket at the host the callback is signed for (wss for https, ws for http), as an app
/// that serves both would have it. `--param ServiceURL=…` sets another.
fn stream_service_url(signed_url: &str) -> String {
    let Ok(uri) = signed_url.parse::<hyper::Uri>() else {
        return String::new();
    };
    let scheme = match uri.scheme_str() {
        Some("http") => "ws",
        _ => "wss",
    };
    // Credentials of the callback URL (user:pass@) are not the stream's to carry.
    match uri.authority().and_then(|a| a.as_str().rsplit('@').next()) {
        Some(host_and_port) => format!("{scheme}://{host_and_port}/stream"),
        None => String::new(),
    }
}

async fn trigger_one(kind: Kind, args: &TriggerOneArgs) -> anyhow::Result<i32> {
    check_url("--to", &args.to)?;
    if let Some(public) = &args.public_url {
        check_url("--public-url", public)?;
    }
    let sender = sender(&args.common)?;
    // A ring_url exists only on calls placed with the Make Call API, i.e. outbound ones.
    let direction = match kind {
        Kind::Ring => "outbound",
        _ => "inbound",
    };
    let method = args.method.to_ascii_uppercase();
    let sign_url = signed_url(&args.to, args.public_url.as_deref());
    let step = Step {
        at: 62.0,
        digits: "1".into(),
        length: 30.0,
        // A stream's status callback echoes its own URL and method as configured at Vobiz,
        // i.e. the URL signed, and the stream of an app that lives at that host.
        stream: StreamEcho {
            service_url: stream_service_url(&sign_url),
            status_callback_url: sign_url.clone(),
            status_callback_method: method.clone(),
        },
        ..Step::default()
    };
    // The callback happens now, `step.at` into a call that started before it.
    let facts = CallFacts::new("919876543210", "918045678901", direction).started_ago(step.at);
    let mut fields = catalogue::fields(kind, &facts, &step);
    apply_params(&mut fields, &args.params)?;
    let callback = Callback {
        method,
        url: args.to.clone(),
        sign_url,
        fields,
    };
    let slow = Duration::from_millis(args.common.slow_after_ms);
    let forgery = sender.forgery();
    let (answer, judgement) = match sender.send(&callback).await {
        Ok(answer) => {
            let judgement = match forgery {
                Some(forgery) => Judgement {
                    failure: send::judge_refusal(&answer, forgery),
                    findings: Vec::new(),
                },
                None => send::judge(&answer, kind.expects_xml(), slow),
            };
            (Some(answer), judgement)
        }
        Err(error) => (
            None,
            Judgement {
                failure: Some(error),
                findings: Vec::new(),
            },
        ),
    };
    let Judgement { failure, findings } = judgement;
    if args.common.json {
        let value = serde_json::json!({
            "kind": kind.name(),
            "method": callback.method,
            "url": callback.url,
            "signed_url": callback.sign_url,
            "fields": callback.fields.iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>(),
            "status": answer.as_ref().map(|a| a.status),
            "elapsed_ms": answer.as_ref().map(|a| a.elapsed.as_secs_f64() * 1000.0),
            "content_type": answer.as_ref().and_then(|a| a.content_type.clone()),
            "body": answer.as_ref().map(|a| a.body.clone()),
            "expected": if forgery.is_some() { "refusal" } else { "acceptance" },
            "ok": failure.is_none(),
            "error": failure,
            "findings": findings,
        });
        say(&value.to_string());
    } else {
        say(&format!(
            "{} {} ({})",
            callback.method,
            callback.url,
            kind.name()
        ));
        if let Some(answer) = &answer {
            say(&format!(
                "{} in {} ms{}",
                answer.status,
                answer.elapsed.as_millis(),
                answer
                    .content_type
                    .as_deref()
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default()
            ));
            if !answer.body.is_empty() {
                // The answer of whatever server --to names, shown, not obeyed.
                say(&format!(
                    "{}",
                    crate::output::printable(answer.body.trim_end(), true)
                ));
            }
        }
        // The listener's checks, in `show`'s words; the errors are the failure below.
        for finding in findings.iter().filter(|f| f.severity != Severity::Error) {
            say(&crate::output::printable(&finding.line(), false));
        }
        match &failure {
            // The reason may quote the answer (an XML element's name).
            Some(reason) => say(&format!(
                "FAILED: {}",
                crate::output::printable(reason, false)
            )),
            // Told apart from an answer that is itself the text "ok".
            None => match (forgery, &answer) {
                (Some(forgery), Some(answer)) => say(&format!(
                    "OK: your server refused {} (HTTP {}), as it should",
                    forgery.described(),
                    answer.status
                )),
                _ => say("OK: Vobiz would accept this answer"),
            },
        }
    }
    Ok(if failure.is_some() { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_public_origin_takes_the_path_of_to() {
        let to = "http://127.0.0.1:3000/vobiz/dial?x=1";
        assert_eq!(signed_url(to, None), to);
        assert_eq!(
            signed_url(to, Some("https://hooks.example.com")),
            "https://hooks.example.com/vobiz/dial?x=1"
        );
        // With a path (even just "/"), it is the URL to sign, as given.
        for public in [
            "https://hooks.example.com/",
            "https://hooks.example.com/vobiz/answer",
        ] {
            assert_eq!(signed_url(to, Some(public)), public);
        }
    }

    #[test]
    fn a_single_streams_url_is_at_the_signed_host() {
        assert_eq!(
            stream_service_url("https://hooks.example.com/vobiz/stream?x=1"),
            "wss://hooks.example.com/stream"
        );
        assert_eq!(
            stream_service_url("http://127.0.0.1:3000/cb"),
            "ws://127.0.0.1:3000/stream"
        );
        assert_eq!(
            stream_service_url("https://user:secret@[::1]:8443/cb"),
            "wss://[::1]:8443/stream"
        );
    }

    #[test]
    fn params_override_or_insert_in_byte_order() {
        let mut f = vec![
            ("A".to_owned(), "1".to_owned()),
            ("C".to_owned(), "3".to_owned()),
        ];
        apply_params(&mut f, &["C=x".into(), "B=2".into(), "a=lower".into()]).unwrap();
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["A", "B", "C", "a"]);
        assert_eq!(f[2].1, "x");
        assert!(apply_params(&mut f, &["novalue".into()]).is_err());
        assert!(
            apply_params(&mut f, &["=v".into()]).is_err(),
            "a field needs a name"
        );
    }
}
