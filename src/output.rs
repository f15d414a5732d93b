//! Headless output: the start-up banner and one line per exchange, as text or JSON.
//! The printer runs as its own task fed by the event channel, so a slow terminal or pipe
//! never slows the proxy; if it falls behind it says how many lines it skipped.

use std::borrow::Cow;
use std::io::Write;

use serde::Serialize;
use serde_json::json;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::broadcast;

use crate::cli::LogFormat;
use crate::exchange::Exchange;
use crate::pipeline::ExchangeEvent;
use crate::signature::VerdictStatus;
use crate::store::ExchangeSummary;

/// Writes a command's output; `false` when the reader stopped reading (`| head`), which is
/// not an error: the command ends quietly, as Unix tools do.
pub fn write_stdout(text: &str) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing standard output")),
    }
}

/// Prints a line of a command's progress. A reader that went away (`| head`) is not an
/// error and stops nothing: what the command does (a simulated call, a listener) goes on to
/// its end, unseen, rather than dying half-way on a panic of `println!`.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            // A full disk behind `> file`: said, not hidden; the command still goes on.
            eprintln!("vobiz-tunnel: writing standard output: {e}");
        }
        _ => {}
    }
}

/// Whether printing `c` could change the terminal rather than show a character: a control
/// character (C0, DEL, C1), or an override of the text's direction, which reorders what is
/// shown ("Trojan Source").
fn unsafe_to_print(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` made safe for a terminal. What a sender controls (form fields, paths, bodies, header
/// values) can hold escape sequences that would clear the screen, retitle the window or write
/// the clipboard (OSC 52); they are shown as `\u{1b}`. In `lines` mode line feeds and tabs
/// stay (a CR LF is shown as a line feed); otherwise a line feed is escaped too, so that a
/// value cannot forge a line of its own in a log.
pub fn printable(text: &str, lines: bool) -> Cow<'_, str> {
    let kept = |c: char| c == '\t' || (lines && c == '\n');
    if !text.chars().any(|c| unsafe_to_print(c) && !kept(c)) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if lines && c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        match unsafe_to_print(c) && !kept(c) {
            true => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
            false => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// `text` with the password of every `scheme://user:password@host` in it shown as `****`:
/// a callback URL configured with credentials is signed whole, so the strings a report shows
/// carry them, and a terminal or a log is no place for a password.
pub fn without_passwords(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        shown.push_str(before);
        // A quote ends a URL quoted in a report; a password holding one is shown from it
        // on (URL passwords are percent-encoded, so rarely do).
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                shown.push_str(&format!("{user}:****@{host}"));
            }
            _ => shown.push_str(authority),
        }
        rest = &after[end..];
    }
    shown.push_str(rest);
    Cow::Owned(shown)
}

/// Local time of a µs timestamp, `HH:MM:SS.mmm`.
pub fn clock_time(micros: i64, offset: UtcOffset) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Local date and time of a µs timestamp, `YYYY-MM-DD HH:MM:SS.mmm ±HH:MM`.
pub fn date_time(micros: i64, offset: UtcOffset) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    let (h, m, _) = offset.as_hms();
    format!(
        "{:04}-{:02}-{:02} {} {}{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        clock_time(micros, offset),
        if offset.is_negative() { '-' } else { '+' },
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}

/// A mark for the verdict that reads without colour.
pub fn verdict_mark(status: VerdictStatus) -> &'static str {
    match status {
        VerdictStatus::Valid => "✓ valid",
        VerdictStatus::Invalid => "✗ INVALID",
        VerdictStatus::Unsigned => "- unsigned",
        VerdictStatus::Unchecked => "? unchecked",
    }
}

/// One readable line: time, id, method, path, Event, status, duration, signature, flags.
pub fn text_line(summary: &ExchangeSummary, offset: UtcOffset) -> String {
    let id = summary.id.map_or("#?".into(), |id| format!("#{id}"));
    let status = summary.status.map_or("---".into(), |s| s.to_string());
    let duration = summary
        .duration_ms
        .map_or(String::new(), |ms| format!("{ms:.1} ms"));
    let mut signature = verdict_mark(summary.signature).to_string();
    if let Some(scheme) = summary.signature_scheme {
        if summary.signature == VerdictStatus::Valid {
            signature.push(' ');
            signature.push_str(scheme.as_str());
        }
    }
    let mut line = format!(
        "{}  {:>5}  {:<6} {:<32} {:<16} {:>3}  {:>9}  {}",
        clock_time(summary.received_at_us, offset),
        id,
        summary.method,
        summary.path,
        summary.event.as_deref().unwrap_or("-"),
        status,
        duration,
        signature,
    );
    if !summary.flags.is_empty() {
        let flags: Vec<_> = summary.flags.iter().map(|f| f.as_str()).collect();
        line.push_str("  [");
        line.push_str(&flags.join(","));
        line.push(']');
    }
    if let Some(replayed) = summary.replay_of {
        line.push_str(&format!("  (replay of #{replayed})"));
    }
    if let Some(error) = &summary.error {
        line.push_str("  ");
        line.push_str(error);
    }
    let warnings = crate::checks::warning_count(&summary.findings);
    if warnings > 0 {
        // Short on purpose: `show ID` lists the findings themselves.
        line.push_str(&format!("  ⚠ {warnings}"));
    }
    printable(&line, false).into_owned()
}

/// One JSON object: the `exchange` line of `--log-format json` and of `list --json`.
pub fn json_line(summary: &ExchangeSummary) -> String {
    let mut value = serde_json::to_value(summary).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("type".into(), json!("exchange"));
    }
    value.to_string()
}

/// The line an event prints, if any (a pending exchange prints when it ends).
fn event_line(event: &ExchangeEvent, format: LogFormat, offset: UtcOffset) -> Option<String> {
    let line = match (event, format) {
        (ExchangeEvent::Pending(_), _) => return None,
        (ExchangeEvent::Finished(exchange), LogFormat::Text) => {
            text_line(&ExchangeSummary::of(exchange), offset)
        }
        (ExchangeEvent::Finished(exchange), LogFormat::Json) => exchange_json_line(exchange),
        (ExchangeEvent::StoreError(message), LogFormat::Text) => format!("store error: {message}"),
        (ExchangeEvent::StoreError(message), LogFormat::Json) => {
            json!({"type": "store_error", "error": message}).to_string()
        }
        (
            ExchangeEvent::ConnectionFailed {
                client_addr,
                reason,
            },
            LogFormat::Text,
        ) => {
            let from = client_addr.map_or("?".into(), |a| a.to_string());
            format!("connection from {from}: {reason}")
        }
        (
            ExchangeEvent::ConnectionFailed {
                client_addr,
                reason,
            },
            LogFormat::Json,
        ) => json!({
            "type": "connection_error",
            "client_addr": client_addr.map(|a| a.to_string()),
            "error": reason,
        })
        .to_string(),
        (ExchangeEvent::Relay(state), LogFormat::Text) => state.describe(),
        (ExchangeEvent::Relay(state), LogFormat::Json) => {
            let mut value = serde_json::to_value(state).unwrap_or_else(|_| json!({}));
            if let Some(object) = value.as_object_mut() {
                object.insert("type".into(), json!("relay"));
            }
            value.to_string()
        }
    };
    Some(match format {
        LogFormat::Text => printable(&line, false).into_owned(),
        LogFormat::Json => line,
    })
}

/// The JSON line of a finished exchange, with the signature's one-line reason and the
/// Vobiz checks' findings added. Serialized straight to text (no intermediate JSON tree):
/// it runs once per exchange.
pub fn exchange_json_line(exchange: &Exchange) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(flatten)]
        summary: ExchangeSummary,
        #[serde(rename = "type")]
        kind: &'static str,
        signature_detail: String,
        nonce_reused_of: Option<crate::exchange::ExchangeId>,
        client_addr: &'a Option<String>,
    }
    let line = Line {
        summary: ExchangeSummary::of(exchange),
        kind: "exchange",
        signature_detail: exchange.verdict.summary(),
        nonce_reused_of: exchange.nonce_reused_of,
        client_addr: &exchange.request.client_addr,
    };
    serde_json::to_string(&line).unwrap_or_else(|_| json!({"type": "exchange"}).to_string())
}

/// How long the printer lets lines gather once it has printed all it had (see `spawn_printer`).
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// Prints every event until the channel closes. Runs on a blocking thread: stdout may be a
/// slow pipe, and lines are flushed in batches whenever the queue runs dry.
///
/// `earlier` is printed first: what happened before `events` was subscribed (the relay
/// tunnel's state).
pub fn spawn_printer(
    mut events: broadcast::Receiver<ExchangeEvent>,
    earlier: Option<ExchangeEvent>,
    format: LogFormat,
    offset: UtcOffset,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        crate::thread_priority::lower_current_thread(crate::thread_priority::BACKGROUND);
        // Not locked for the thread's life: the banner and other prints must still get through.
        let mut out = std::io::BufWriter::new(std::io::stdout());
        if let Some(line) = earlier.and_then(|event| event_line(&event, format, offset)) {
            let _ = writeln!(out, "{line}");
        }
        loop {
            let event = match events.try_recv() {
                Ok(event) => event,
                Err(broadcast::error::TryRecvError::Empty) => {
                    let _ = out.flush();
                    // Under load, let lines gather for a moment instead of being woken for
                    // each one (a wake-up costs the proxy's threads more than the line).
                    // Idle, the next line wakes the thread at once.
                    std::thread::sleep(GATHER);
                    if let Ok(event) = events.try_recv() {
                        event
                    } else {
                        match events.blocking_recv() {
                            Ok(event) => event,
                            Err(broadcast::error::RecvError::Closed) => break,
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                let _ = writeln!(out, "{}", skipped_line(n, format));
                                continue;
                            }
                        }
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    let _ = writeln!(out, "{}", skipped_line(n, format));
                    continue;
                }
                Err(broadcast::error::TryRecvError::Closed) => break,
            };
            let Some(line) = event_line(&event, format, offset) else {
                continue;
            };
            if writeln!(out, "{line}").is_err() {
                break; // stdout closed: keep proxying, stop printing
            }
        }
        let _ = out.flush();
    })
}

fn skipped_line(count: u64, format: LogFormat) -> String {
    match format {
        LogFormat::Text => {
            format!("({count} exchanges not printed: output too slow; they are in the store)")
        }
        LogFormat::Json => json!({"type": "skipped", "count": count}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_and_nothing_else_changes() {
        let text = "signed \"https://bob:S3cret@h.example:8443/cb.123\" and http://h/x?u=a@b \
                    and https://ann@h/ and ftp://u:p@[::1]/";
        assert_eq!(
            without_passwords(text),
            "signed \"https://bob:****@h.example:8443/cb.123\" and http://h/x?u=a@b \
             and https://ann@h/ and ftp://u:****@[::1]/"
        );
        assert!(matches!(
            without_passwords("no urls @ all"),
            Cow::Borrowed(_)
        ));
        assert_eq!(without_passwords("https://u:p@h"), "https://u:****@h");
    }
    use crate::checks::{Finding, Severity};

    #[test]
    fn what_would_change_the_terminal_is_shown_escaped() {
        use super::printable;
        assert!(matches!(
            printable("Hangup\tok ✓ é", false),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("a\u{1b}[2Jb\u{7}\u{9b}c\u{202e}d\u{7f}", false),
            "a\\u{1b}[2Jb\\u{7}\\u{9b}c\\u{202e}d\\u{7f}"
        );
        assert_eq!(
            printable("one\r\ntwo\nthree", false),
            "one\\u{d}\\u{a}two\\u{a}three"
        );
        assert_eq!(
            printable("one\r\ntwo\rthree\n", true),
            "one\ntwo\\u{d}three\n"
        );
    }

    #[test]
    fn the_text_line_counts_warnings_and_the_json_line_lists_findings() {
        let mut exchange =
            crate::checks::delivery_tests::callback("/hangup", "CallUUID=c1&Event=Hangup");
        exchange.findings = vec![
            Finding::new("slow-answer", Severity::Warning, "answered after 4.0 s"),
            Finding::new("note", Severity::Info, "just so you know"),
        ];
        let exchange = std::sync::Arc::new(exchange);
        let pending = ExchangeEvent::Pending(exchange.clone());
        assert_eq!(event_line(&pending, LogFormat::Text, UtcOffset::UTC), None);
        let event = ExchangeEvent::Finished(exchange);
        let text = event_line(&event, LogFormat::Text, UtcOffset::UTC).unwrap_or_default();
        assert!(text.ends_with("  ⚠ 1"), "{text}");
        let line = event_line(&event, LogFormat::Json, UtcOffset::UTC).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(json["findings"][0]["rule"], "slow-answer");
        assert_eq!(json["findings"][1]["severity"], "info");
    }
}
