//! The detail pane of the selected exchange: Request, Response, Signature and Timing tabs.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Tabs, Wrap};
use ratatui::Frame;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::body::{body_lines, form_lines, shown_part};
use super::theme;
use crate::checks::{Finding, Severity};
use crate::exchange::{Exchange, Headers, RequestRecord};
use crate::output::date_time;
use crate::signature::CheckResult;
use crate::tui::state::{AppState, Focus, TABS};

fn header_lines(headers: &Headers) -> Vec<Line<'static>> {
    headers
        .0
        .iter()
        .map(|(name, value)| {
            Line::from(vec![
                Span::styled(format!("{name}: "), Style::new().fg(Color::Cyan)),
                Span::raw(Headers::shown_value(name, value)),
            ])
        })
        .collect()
}

fn request_lines(exchange: &Exchange, raw: bool) -> Vec<Line<'static>> {
    let request = &exchange.request;
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{} ", request.method),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(request.public_url.clone()),
        Span::styled(
            format!("  {}", request.http_version),
            Style::new().fg(Color::DarkGray),
        ),
    ])];
    let replay = match (exchange.replay_of, &exchange.sent_to) {
        (Some(original), Some(url)) => Some(format!("replay of #{original}, sent to {url}")),
        (Some(original), None) => Some(format!("replay of #{original}")),
        // A replay imported without its original.
        (None, Some(url)) => Some(format!("a replay, sent to {url}")),
        (None, None) => None,
    };
    if let Some(replay) = replay {
        lines.push(Line::styled(replay, Style::new().fg(Color::Yellow)));
    }
    if let Some(earlier) = exchange.nonce_reused_of {
        lines.push(Line::styled(
            format!("nonce already seen in #{earlier}: a replayed request"),
            Style::new().fg(Color::Yellow),
        ));
    }
    if let Some(error) = &exchange.error {
        lines.push(Line::styled(error.clone(), Style::new().fg(Color::Red)));
    }
    lines.push(theme::heading("Headers"));
    lines.extend(header_lines(&request.headers));
    let cut = shown_part(&request.body).len() < request.body.len();
    let fields = match cut {
        false => exchange.form_fields(),
        // The fields of the part shown (whole up to its last `&`), as the body is.
        true => {
            let shown = shown_part(&request.body);
            let whole = shown.iter().rposition(|&b| b == b'&').unwrap_or(0);
            RequestRecord {
                target: request.target.clone(),
                headers: request.headers.clone(),
                body: request.body.slice(..whole),
                ..RequestRecord::default()
            }
            .form_fields()
        }
    };
    if !fields.is_empty() && !raw {
        lines.push(theme::heading("Form fields"));
        lines.extend(form_lines(&fields));
        if cut {
            lines.push(Line::styled(
                "… and the fields in the part of the body not shown (vobiz-tunnel show lists them all)",
                Style::new().fg(Color::DarkGray),
            ));
        }
    }
    let truncated = if request.body_truncated {
        ", truncated"
    } else {
        ""
    };
    lines.push(theme::heading(&format!(
        "Body ({} bytes{truncated}; b: raw)",
        request.body.len()
    )));
    lines.extend(body_lines(&request.headers, &request.body, raw));
    lines
}

fn response_lines(exchange: &Exchange, raw: bool) -> Vec<Line<'static>> {
    let Some(response) = &exchange.response else {
        return vec![Line::raw(format!(
            "No response yet ({}).",
            exchange.outcome.as_str()
        ))];
    };
    let mut lines = finding_lines(&exchange.findings);
    lines.push(Line::from(vec![
        Span::styled(
            format!("{}", response.status),
            theme::status_style(Some(response.status)),
        ),
        Span::raw(format!("  {}", exchange.outcome.as_str())),
    ]));
    lines.push(theme::heading("Headers"));
    lines.extend(header_lines(&response.headers));
    lines.push(theme::heading(&format!(
        "Body ({} bytes)",
        response.body.len()
    )));
    lines.extend(body_lines(&response.headers, &response.body, raw));
    lines
}

/// The Vobiz checks' findings, first on the Response tab: what Vobiz would make of the answer.
fn finding_lines(findings: &[Finding]) -> Vec<Line<'static>> {
    if findings.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![theme::heading("Vobiz checks")];
    for finding in findings {
        let (mark, colour) = match finding.severity {
            Severity::Error => ("✗", Color::Red),
            Severity::Warning => ("⚠", Color::Yellow),
            Severity::Info => ("i", Color::Cyan),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{mark} {} ", finding.rule), Style::new().fg(colour)),
            Span::raw(finding.message.clone()),
        ]));
    }
    lines.push(Line::raw(""));
    lines
}

/// The verdict, its explanation, then every header with each key and form tried. Signed
/// strings stand on lines of their own, cut at the pane's edge (see [`exact_lines`]).
fn signature_lines(exchange: &Exchange, width: u16) -> Vec<Line<'static>> {
    let verdict = &exchange.verdict;
    let mut lines = vec![Line::from(vec![
        theme::verdict_mark(verdict.status, false),
        Span::raw(format!("  {}", verdict.summary())),
    ])];
    for sentence in verdict.explanation_beyond_summary() {
        lines.push(Line::raw(sentence.clone()));
    }
    let dim = Style::new().fg(Color::DarkGray);
    for check in &verdict.checks {
        lines.push(theme::heading(&check.header));
        lines.push(Line::raw(format!("value  {}", check.value)));
        if let Some(nonce) = &check.nonce {
            lines.push(Line::raw(format!("nonce  {nonce}")));
        }
        let result = match check.result {
            CheckResult::Valid => Span::styled("valid", Style::new().fg(Color::Green)),
            CheckResult::Invalid => Span::styled("invalid", Style::new().fg(Color::Red)),
            CheckResult::Unchecked => Span::styled(
                "unchecked: no token of this kind",
                Style::new().fg(Color::Yellow),
            ),
            CheckResult::Malformed => Span::styled("malformed", Style::new().fg(Color::Red)),
            CheckResult::Informational => Span::styled("shown only (V1 never decides)", dim),
        };
        lines.push(Line::from(vec![Span::raw("result "), result]));
        for attempt in &check.attempts {
            let outcome = if attempt.matched {
                Span::styled("matches", Style::new().fg(Color::Green))
            } else {
                Span::styled("differs", Style::new().fg(Color::Red))
            };
            lines.push(Line::from(vec![
                Span::raw(format!(
                    "  {} with {}: ",
                    attempt.form.describe(),
                    attempt.key
                )),
                outcome,
            ]));
            lines.extend(exact_lines("    signed   ", &attempt.string_to_sign, width));
            lines.extend(exact_lines("    gives    ", &attempt.expected, width));
        }
    }
    lines
}

/// `text` after `label`, cut into lines exactly at the pane's edge, the later ones indented
/// under the first. Word wrapping would break a string to sign at its spaces, and a space
/// that is part of what was signed would look like the end of a line.
fn exact_lines(label: &'static str, text: &str, width: u16) -> Vec<Line<'static>> {
    let indent = label.width();
    // A pane too narrow for the label still shows some of the string on each line.
    let room = usize::from(width).saturating_sub(indent).max(16);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    for c in text.chars() {
        let cells = c.width().unwrap_or(0);
        if used + cells > room && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
        line.push(c);
        used += cells;
    }
    lines.push(line);
    let dim = Style::new().fg(Color::DarkGray);
    lines
        .into_iter()
        .enumerate()
        .map(|(index, part)| {
            let lead = match index {
                0 => Span::styled(label, dim),
                _ => Span::raw(" ".repeat(indent)),
            };
            Line::from(vec![lead, Span::raw(part)])
        })
        .collect()
}

fn timing_lines(exchange: &Exchange, state: &AppState) -> Vec<Line<'static>> {
    let timings = &exchange.timings;
    let since = |at: Option<i64>| {
        at.map_or("-".into(), |t| {
            format!(
                "+{:.3} ms",
                t.saturating_sub(timings.received_us) as f64 / 1000.0
            )
        })
    };
    let request = &exchange.request;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    [
        ("received", date_time(timings.received_us, state.offset)),
        ("forwarded", since(timings.forwarded_us)),
        ("first byte", since(timings.first_byte_us)),
        ("done", since(timings.done_us)),
        ("client", or_dash(&request.client_addr)),
        ("HTTP", request.http_version.clone()),
        ("TLS", or_dash(&request.tls.version)),
        ("ALPN", or_dash(&request.tls.alpn)),
        ("SNI", or_dash(&request.tls.sni)),
    ]
    .into_iter()
    .map(|(name, value)| {
        Line::from(vec![
            Span::styled(format!("{name:<11}"), Style::new().fg(Color::Cyan)),
            Span::raw(value),
        ])
    })
    .collect()
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let focused = state.focus == Focus::Detail;
    let block = Block::bordered()
        .title(match state.selected_row().and_then(|r| r.id) {
            Some(id) => format!(" #{id} "),
            None => " Detail ".into(),
        })
        .border_style(theme::border(focused));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [tabs_area, body_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let tabs = Tabs::new(
        TABS.iter()
            .enumerate()
            .map(|(i, t)| format!("{} {t}", i + 1)),
    )
    .select(state.tab)
    .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_widget(tabs, tabs_area);

    let lines = match &state.detail {
        Some(exchange) if exchange.id == state.selected_id() => match state.tab {
            0 => request_lines(exchange, state.raw),
            1 => response_lines(exchange, state.raw),
            2 => signature_lines(exchange, body_area.width),
            _ => timing_lines(exchange, state),
        },
        _ if state.rows.is_empty() && !state.filter.is_empty() => vec![Line::raw(format!(
            "No exchange matches the filter {:?} (Esc clears it).",
            state.filter.text()
        ))],
        _ if state.rows.is_empty() => vec![
            Line::raw("No exchanges yet."),
            Line::raw(""),
            Line::raw(format!(
                "Point Vobiz (or curl) at {}",
                state.status.listen_url
            )),
            Line::raw(format!(
                "Callbacks are forwarded to {}",
                state.status.forward
            )),
        ],
        _ => vec![Line::styled("loading…", Style::new().fg(Color::DarkGray))],
    };
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    frame.render_widget(
        super::bounded_scroll(paragraph, body_area, state),
        body_area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line<'_>]) -> Vec<String> {
        let text = |line: &Line<'_>| line.spans.iter().map(|s| s.content.as_ref()).collect();
        lines.iter().map(text).collect()
    }

    #[test]
    fn a_string_to_sign_is_cut_at_the_edge_not_at_its_spaces() {
        let signed = "https://hooks.example.com/cb?x=1.CallerName=Asha Rao&To=9198 7654 3210";
        let lines = texts(&exact_lines("    signed   ", signed, 33));
        assert_eq!(
            lines,
            [
                "    signed   https://hooks.exampl",
                "             e.com/cb?x=1.CallerN",
                "             ame=Asha Rao&To=9198",
                "              7654 3210",
            ]
        );
        let rejoined: String = lines.iter().map(|line| &line[13..]).collect();
        assert_eq!(rejoined, signed, "nothing added or lost at the cuts");
    }

    #[test]
    fn wide_characters_are_not_split_and_a_narrow_pane_still_shows_some() {
        let lines = texts(&exact_lines("  gives ", "日本語のテキスト", 14));
        assert_eq!(lines[0], "  gives 日本語のテキスト", "16 columns at least");
        let lines = texts(&exact_lines("  gives ", "日本語のテキストです", 24));
        assert_eq!(lines, ["  gives 日本語のテキスト", "        です"]);
    }
}
