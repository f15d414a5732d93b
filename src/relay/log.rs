//! The relay's log: one line per callback (time, method, path, status, duration, route,
//! sender) and one per tunnel event (connected, disconnected, replaced, refused, dropped), as
//! text or JSON. The relay records nothing else: no bodies, no queries (they may carry
//! credentials), no headers, no tokens. Lines go to a channel; `vobiz-tunnel relay` prints
//! them on stdout, tests read them.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::cli::LogFormat;

/// Longest path written to the log; a sender can make paths arbitrarily long.
const MAX_PATH_CHARS: usize = 256;

/// What happened to a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEvent {
    /// A laptop authenticated; callbacks for its route now go to it.
    Connected,
    /// A tunnel ended.
    Disconnected,
    /// A laptop connected with the token of an existing tunnel, which was closed.
    Replaced,
    /// A laptop's hello was refused (unknown token, malformed hello).
    Refused,
    /// A connection asked for the tunnel protocol but never said hello in time.
    Dropped,
}

impl TunnelEvent {
    fn word(self) -> &'static str {
        match self {
            TunnelEvent::Connected => "connected",
            TunnelEvent::Disconnected => "disconnected",
            TunnelEvent::Replaced => "replaced",
            TunnelEvent::Refused => "refused",
            TunnelEvent::Dropped => "dropped",
        }
    }
}

/// One carried (or answered-by-the-relay) callback.
pub struct CallbackLine<'a> {
    pub method: &'a str,
    /// The path only: the query is left out.
    pub path: &'a str,
    pub status: u16,
    pub duration: Duration,
    /// The route's name (host, prefix or "default"); `None` when none matched.
    pub route: Option<&'a str>,
    pub client: SocketAddr,
    /// Why the relay answered itself (503 with no laptop, 403, ...).
    pub reason: Option<&'a str>,
}

/// Where log lines go, and in which format.
#[derive(Clone)]
pub struct RelayLog {
    format: LogFormat,
    sink: mpsc::UnboundedSender<String>,
}

/// UTC, RFC 3339 with always six fraction digits, so that the text log's columns line up.
fn now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

fn short_path(path: &str) -> &str {
    super::protocol::truncate(path, MAX_PATH_CHARS)
}

impl RelayLog {
    /// A log and the receiving end of its lines.
    pub fn channel(format: LogFormat) -> (RelayLog, mpsc::UnboundedReceiver<String>) {
        let (sink, lines) = mpsc::unbounded_channel();
        (RelayLog { format, sink }, lines)
    }

    fn emit(&self, line: String) {
        // Nobody reading (the printer stopped) is not a reason to fail a callback.
        let _ = self.sink.send(line);
    }

    /// The line for one callback.
    pub fn callback(&self, c: &CallbackLine<'_>) {
        let ms = c.duration.as_secs_f64() * 1000.0;
        let path = short_path(c.path);
        let route = c.route.unwrap_or("-");
        self.emit(match self.format {
            LogFormat::Text => {
                let reason = c.reason.map(|r| format!(" ({r})")).unwrap_or_default();
                format!(
                    "{} {} {path} {} {ms:.1} ms route={route} from={}{reason}",
                    now(),
                    c.method,
                    c.status,
                    c.client
                )
            }
            LogFormat::Json => json!({
                "time": now(),
                "type": "callback",
                "method": c.method,
                "path": path,
                "status": c.status,
                "duration_ms": (ms * 1000.0).round() / 1000.0,
                "route": c.route,
                "client": c.client.to_string(),
                "reason": c.reason,
            })
            .to_string(),
        });
    }

    /// The line for a tunnel event. `detail` must never hold a token.
    pub fn tunnel(&self, event: TunnelEvent, route: Option<&str>, peer: SocketAddr, detail: &str) {
        self.emit(match self.format {
            LogFormat::Text => format!(
                "{} tunnel {} route={} from={peer}{}",
                now(),
                event.word(),
                route.unwrap_or("-"),
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
            LogFormat::Json => json!({
                "time": now(),
                "type": "tunnel",
                "event": event.word(),
                "route": route,
                "peer": peer.to_string(),
                "detail": detail,
            })
            .to_string(),
        });
    }

    /// A line about the relay itself (started, stopping).
    pub fn notice(&self, message: &str) {
        self.emit(match self.format {
            LogFormat::Text => format!("{} {message}", now()),
            LogFormat::Json => {
                json!({"time": now(), "type": "relay", "message": message}).to_string()
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_facts_in_both_formats() {
        let client: SocketAddr = "15.206.6.156:40112".parse().unwrap();
        let line = CallbackLine {
            method: "POST",
            path: "/vobiz/hangup",
            status: 503,
            duration: Duration::from_micros(1500),
            route: Some("/bob"),
            client,
            reason: Some("no laptop is connected"),
        };
        let (log, mut lines) = RelayLog::channel(LogFormat::Text);
        log.callback(&line);
        log.tunnel(TunnelEvent::Refused, None, client, "unknown token");
        let text = lines.try_recv().unwrap();
        assert!(text.ends_with(
            "POST /vobiz/hangup 503 1.5 ms route=/bob from=15.206.6.156:40112 (no laptop is connected)"
        ), "{text}");
        let text = lines.try_recv().unwrap();
        assert!(text.ends_with("tunnel refused route=- from=15.206.6.156:40112: unknown token"));

        let (log, mut lines) = RelayLog::channel(LogFormat::Json);
        log.callback(&line);
        let value: serde_json::Value = serde_json::from_str(&lines.try_recv().unwrap()).unwrap();
        assert_eq!(value["status"], 503);
        assert_eq!(value["route"], "/bob");
        assert_eq!(value["duration_ms"], 1.5);
    }

    #[test]
    fn times_always_have_six_fraction_digits() {
        for _ in 0..50 {
            let time = now();
            assert_eq!(time.len(), "2026-11-24T03:13:53.595939Z".len(), "{time}");
            assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        }
    }
}
