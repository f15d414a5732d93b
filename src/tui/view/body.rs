//! Bodies for reading: JSON pretty-printed, XML indented, text as is (form fields get a table),
//! and a hex dump when the raw bytes are asked for (or the body is not text).

use quick_xml::events::Event;
use quick_xml::Reader;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

use crate::exchange::Headers;

/// The lines that show `body` given its headers; `raw` forces the hex dump.
pub fn body_lines(headers: &Headers, body: &[u8], raw: bool) -> Vec<Line<'static>> {
    if body.is_empty() {
        return vec![Line::styled("(empty)", Style::new().fg(Color::DarkGray))];
    }
    if raw {
        return hex_dump(body);
    }
    let content_type = headers
        .get_str("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let Ok(text) = std::str::from_utf8(body) else {
        return hex_dump(body);
    };
    // Form bodies show as text here; their decoded fields have a section of their own.
    let trimmed = text.trim_start();
    if content_type.contains("json") || trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_string());
            return pretty.lines().map(|l| Line::raw(l.to_string())).collect();
        }
    }
    if content_type.contains("xml") || trimmed.starts_with('<') {
        if let Some(lines) = indent_xml(text) {
            return lines.into_iter().map(Line::raw).collect();
        }
    }
    text.lines().map(|l| Line::raw(l.to_string())).collect()
}

/// `key  value` lines, keys aligned.
pub fn form_lines(fields: &[(String, String)]) -> Vec<Line<'static>> {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(key, value)| {
            Line::from(vec![
                Span::styled(format!("{key:<width$}  "), Style::new().fg(Color::Cyan)),
                Span::raw(value.clone()),
            ])
        })
        .collect()
}

/// XML with one element per line, indented by depth; `None` when it is not well-formed.
pub fn indent_xml(text: &str) -> Option<Vec<String>> {
    let mut reader = Reader::from_str(text);
    let mut lines = Vec::new();
    let mut depth = 0usize;
    let pad = |depth: usize| "  ".repeat(depth);
    loop {
        match reader.read_event().ok()? {
            Event::Start(tag) => {
                lines.push(format!("{}<{}>", pad(depth), String::from_utf8_lossy(&tag)));
                depth += 1;
            }
            Event::End(tag) => {
                depth = depth.checked_sub(1)?;
                lines.push(format!(
                    "{}</{}>",
                    pad(depth),
                    String::from_utf8_lossy(tag.name().as_ref())
                ));
            }
            Event::Empty(tag) => lines.push(format!(
                "{}<{}/>",
                pad(depth),
                String::from_utf8_lossy(&tag)
            )),
            Event::Text(t) => {
                let raw = String::from_utf8_lossy(&t).trim().to_string();
                if !raw.is_empty() {
                    lines.push(format!("{}{raw}", pad(depth)));
                }
            }
            Event::CData(t) => lines.push(format!(
                "{}<![CDATA[{}]]>",
                pad(depth),
                String::from_utf8_lossy(&t)
            )),
            Event::Decl(d) => lines.push(format!("<?{}?>", String::from_utf8_lossy(&d))),
            Event::Comment(c) => lines.push(format!(
                "{}<!--{}-->",
                pad(depth),
                String::from_utf8_lossy(&c)
            )),
            Event::PI(p) => {
                lines.push(format!("{}<?{}?>", pad(depth), String::from_utf8_lossy(&p)))
            }
            Event::DocType(d) => lines.push(format!("<!DOCTYPE {}>", String::from_utf8_lossy(&d))),
            Event::Eof => break,
            _ => {}
        }
    }
    (depth == 0).then_some(lines)
}

/// 16 bytes a line: offset, hex, printable ASCII.
pub fn hex_dump(body: &[u8]) -> Vec<Line<'static>> {
    body.chunks(16)
        .enumerate()
        .map(|(row, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let ascii: String = chunk
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            Line::from(vec![
                Span::styled(
                    format!("{:08x}  ", row * 16),
                    Style::new().fg(Color::DarkGray),
                ),
                Span::raw(format!("{:<48} ", hex.join(" "))),
                Span::styled(ascii, Style::new().fg(Color::DarkGray)),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_indented_and_broken_xml_is_not() {
        let lines =
            indent_xml("<Response><Speak voice=\"WOMAN\">Hi</Speak><Hangup/></Response>").unwrap();
        assert_eq!(
            lines,
            vec![
                "<Response>",
                "  <Speak voice=\"WOMAN\">",
                "    Hi",
                "  </Speak>",
                "  <Hangup/>",
                "</Response>"
            ]
        );
        assert!(indent_xml("<Response><Speak></Response>").is_none());
    }

    #[test]
    fn hex_dump_shows_offsets_and_ascii() {
        let lines = hex_dump(b"Event=Hangup\xff\x00and more bytes");
        assert_eq!(lines.len(), 2);
        let first: String = lines[0].spans.iter().map(|s| s.content.as_ref()).collect();
        assert!(first.starts_with("00000000  45 76"), "{first}");
        assert!(first.ends_with("Event=Hangup..an"), "{first}");
    }
}
