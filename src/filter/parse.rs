//! Text to terms. Works on characters so that error columns are what a person counts on
//! screen, even after non-ASCII text.

use super::{FilterError, Term, Test};
use crate::exchange::{ExchangeId, Flag, Outcome};
use crate::signature::{Scheme, VerdictStatus};

/// The field names, as listed in error messages.
const FIELDS: &str =
    "event, call, method, status, sig, scheme, path, header, body, outcome, flag, finding, id, \
     replay_of";

fn error(index: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        column: index + 1,
        message: message.into(),
    }
}

/// Splits `text` into terms and parses each.
pub(super) fn terms(text: &str) -> Result<Vec<Term>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut terms = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let negated = chars[i] == '!';
        if negated {
            i += 1;
            match chars.get(i) {
                Some('!') => return Err(error(i, "a term can be negated only once")),
                Some(c) if !c.is_whitespace() => {}
                _ => {
                    return Err(error(
                        start,
                        "\"!\" must be followed by a term, e.g. !event:Hangup",
                    ))
                }
            }
        }
        // A field name is an unquoted identifier directly followed by a colon; anything else
        // (including `"a:b"`) is a value, so quoting is how to search for text with a colon.
        let mut end = i;
        while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        let field = match chars.get(end) {
            Some(':') if end > i && chars[i].is_ascii_alphabetic() => {
                let name: String = chars[i..end].iter().collect();
                let at = i;
                i = end + 1;
                Some((name.to_ascii_lowercase(), at))
            }
            _ => None,
        };
        let value_at = i;
        let (value, next) = read_value(&chars, i)?;
        i = next;
        let test = match field {
            Some((name, at)) => field_test(&name, at, &value, value_at)?,
            None => bare_test(&value.text, value.quoted, start)?,
        };
        terms.push(Term { negated, test });
    }
    Ok(terms)
}

/// A term's value with quotes and escapes removed.
struct Value {
    text: String,
    /// Whether any part was quoted (a quoted word is never a keyword).
    quoted: bool,
    /// Index in the input of each character of `text`, for error columns.
    positions: Vec<usize>,
}

/// Reads a value up to unquoted whitespace. Returns it and the index after it.
fn read_value(chars: &[char], mut i: usize) -> Result<(Value, usize), FilterError> {
    let mut value = String::new();
    let mut positions = Vec::new();
    let mut quoted = false;
    let mut open_quote = None;
    while i < chars.len() {
        let c = chars[i];
        if open_quote.is_none() && c.is_whitespace() {
            break;
        }
        if c == '"' {
            open_quote = match open_quote {
                Some(_) => None,
                None => Some(i),
            };
            quoted = true;
        } else if open_quote.is_some() && c == '\\' && matches!(chars.get(i + 1), Some('"' | '\\'))
        {
            i += 1;
            value.push(chars[i]);
            positions.push(i);
        } else if c.is_control() && !c.is_whitespace() {
            // NUL would end a GLOB pattern early in SQLite; no control character is useful.
            return Err(error(
                i,
                format!("control character U+{:04X} is not allowed", c as u32),
            ));
        } else {
            value.push(c);
            positions.push(i);
        }
        i += 1;
    }
    match open_quote {
        Some(at) => Err(error(
            at,
            "this quote is never closed; end the value with \"",
        )),
        None => Ok((
            Value {
                text: value,
                quoted,
                positions,
            },
            i,
        )),
    }
}

/// A term without a field: a keyword, or free text.
fn bare_test(value: &str, quoted: bool, at: usize) -> Result<Test, FilterError> {
    if value.is_empty() {
        return Err(error(
            at,
            "empty quotes search for nothing; put text between them",
        ));
    }
    if !quoted {
        match value.to_ascii_lowercase().as_str() {
            "slow" => return Ok(Test::Flag(Flag::Slow)),
            "replay" => return Ok(Test::Flag(Flag::Replay)),
            "reused" => return Ok(Test::Flag(Flag::NonceReused)),
            "error" => {
                return Ok(Test::Outcome(vec![
                    Outcome::UpstreamError,
                    Outcome::UpstreamTimeout,
                    Outcome::ClientError,
                ]))
            }
            _ => {}
        }
    }
    Ok(Test::Text(value.to_ascii_lowercase()))
}

/// A `field:value` term. `at` is where the field name starts, `value_at` where the value does.
fn field_test(name: &str, at: usize, parsed: &Value, value_at: usize) -> Result<Test, FilterError> {
    let value = parsed.text.as_str();
    let example = match name {
        "event" => "event:Hangup",
        "call" => "call:7d1c2c5e",
        "method" => "method:POST",
        "status" => "status:5xx",
        "sig" => "sig:invalid",
        "scheme" => "scheme:V3",
        "path" => "path:/vobiz/*",
        "header" => "header:X-Foo=bar",
        "body" => "body:Digits=1",
        "outcome" => "outcome:forwarded",
        "flag" => "flag:slow",
        "finding" => "finding:xml-root",
        "id" => "id:5..20",
        "replay_of" => "replay_of:42",
        _ => {
            return Err(error(
                at,
                format!(
                    "unknown field \"{name}\"; fields are {FIELDS} \
                     (to search for text with a colon, put it in double quotes)"
                ),
            ))
        }
    };
    if value.is_empty() {
        return Err(error(
            value_at,
            format!("\"{name}:\" needs a value, e.g. {example}"),
        ));
    }
    let invalid = |what: &str| error(value_at, format!("{name}:{value} is not {what}"));
    Ok(match name {
        "event" => Test::Event(value.to_string()),
        "call" => Test::CallPrefix(value.to_string()),
        "method" => Test::Method(value.to_string()),
        "status" => status(value).ok_or_else(|| {
            invalid(
                "a status; use a code (status:200), a class (status:5xx), a comparison \
                 (status:>=400, status:<300) or status:none",
            )
        })?,
        "sig" => Test::Signature(signature(value).ok_or_else(|| {
            invalid("a signature verdict; use sig:valid, sig:invalid, sig:unsigned or sig:unchecked")
        })?),
        "scheme" => Test::Scheme(scheme(value).ok_or_else(|| {
            invalid("a signature scheme; use scheme:V3, scheme:V2, scheme:MA-V3, scheme:MA-V2 or scheme:V1")
        })?),
        "path" if value.contains(['*', '?']) => Test::PathGlob(value.to_string()),
        "path" => Test::PathExact(value.to_string()),
        "header" => header(parsed, value_at)?,
        "body" => Test::Body(value.to_string()),
        "outcome" => Test::Outcome(vec![Outcome::parse(&value.to_ascii_lowercase())
            .ok_or_else(|| {
                invalid(
                    "an outcome; use forwarded, rejected, too_large, client_error, \
                     upstream_error, upstream_timeout or pending",
                )
            })?]),
        "flag" => Test::Flag(Flag::parse(&value.to_ascii_lowercase()).ok_or_else(|| {
            let names: Vec<&str> = Flag::ALL.iter().map(|f| f.as_str()).collect();
            invalid(&format!("a flag; flags are {}", names.join(", ")))
        })?),
        "finding" => {
            let wanted = value.to_ascii_lowercase();
            let is_rule = crate::checks::RULE_NAMES.contains(&wanted.as_str());
            if !is_rule && crate::checks::Severity::named(&wanted).is_none() {
                return Err(invalid(&format!(
                    "a rule or a severity; rules are {}; severities are error, warning, info",
                    crate::checks::RULE_NAMES.join(", ")
                )));
            }
            Test::Finding(wanted)
        }
        "id" => id_range(value, value_at)?.ok_or_else(|| {
            invalid("an id or id range; use id:42, id:>100, id:<=20, id:5..20, id:5.. or id:..20")
        })?,
        _ => Test::ReplayOf(
            number(value).ok_or_else(|| invalid("an exchange id, e.g. replay_of:42"))?,
        ),
    })
}

/// `none`, `200`, `5xx`, or a comparison with a 3-digit code.
fn status(value: &str) -> Option<Test> {
    if value.eq_ignore_ascii_case("none") {
        return Some(Test::StatusNone);
    }
    let bytes = value.as_bytes();
    let is_class = bytes.len() == 3 && bytes[1..].eq_ignore_ascii_case(b"xx");
    if is_class && bytes[0].is_ascii_digit() && bytes[0] != b'0' {
        let min = u16::from(bytes[0] - b'0') * 100;
        return Some(Test::Status { min, max: min + 99 });
    }
    let (op, code) = split_comparison(value);
    let code = code.as_bytes();
    if code.len() != 3 || code[0] == b'0' || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = std::str::from_utf8(code).ok()?.parse().ok()?;
    let (min, max) = match op {
        "" | "=" => (code, code),
        ">=" => (code, u16::MAX),
        ">" => (code + 1, u16::MAX),
        "<=" => (0, code),
        _ => (0, code - 1),
    };
    Some(Test::Status { min, max })
}

/// Splits a leading `>=`, `<=`, `>`, `<` or `=` off.
fn split_comparison(value: &str) -> (&str, &str) {
    for op in [">=", "<=", ">", "<", "="] {
        if let Some(rest) = value.strip_prefix(op) {
            return (op, rest);
        }
    }
    ("", value)
}

/// A non-negative decimal number, digits only (no sign, no spaces).
fn number(text: &str) -> Option<ExchangeId> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `42`, `>100`, `>=100`, `<20`, `<=20`, `=42`, `5..20`, `5..`, `..20`; `Ok(None)` when it is
/// none of these, an error for a backwards range.
fn id_range(value: &str, value_at: usize) -> Result<Option<Test>, FilterError> {
    let (min, max) = if let Some((low, high)) = value.split_once("..") {
        if low.is_empty() && high.is_empty() {
            return Ok(None);
        }
        let min = if low.is_empty() {
            Some(ExchangeId::MIN)
        } else {
            number(low)
        };
        let max = if high.is_empty() {
            Some(ExchangeId::MAX)
        } else {
            number(high)
        };
        let (Some(min), Some(max)) = (min, max) else {
            return Ok(None);
        };
        if min > max {
            return Err(error(
                value_at,
                format!("id:{value} is backwards; write the lower id first (id:{max}..{min})"),
            ));
        }
        (min, max)
    } else {
        let (op, digits) = split_comparison(value);
        let Some(n) = number(digits) else {
            return Ok(None);
        };
        match op {
            "" | "=" => (n, n),
            ">=" => (n, ExchangeId::MAX),
            // n + 1 overflows only for the largest id, which nothing is greater than.
            ">" => n.checked_add(1).map_or((1, 0), |m| (m, ExchangeId::MAX)),
            "<=" => (ExchangeId::MIN, n),
            _ => (ExchangeId::MIN, n - 1),
        }
    };
    Ok(Some(Test::Id { min, max }))
}

fn signature(value: &str) -> Option<VerdictStatus> {
    Some(match value.to_ascii_lowercase().as_str() {
        "valid" => VerdictStatus::Valid,
        "invalid" => VerdictStatus::Invalid,
        "unsigned" => VerdictStatus::Unsigned,
        "unchecked" => VerdictStatus::Unchecked,
        _ => return None,
    })
}

fn scheme(value: &str) -> Option<Scheme> {
    Some(match value.to_ascii_uppercase().as_str() {
        "V3" => Scheme::V3,
        "V2" => Scheme::V2,
        "MA-V3" => Scheme::MaV3,
        "MA-V2" => Scheme::MaV2,
        "V1" => Scheme::V1,
        _ => return None,
    })
}

/// `Name` or `Name=text`. The name must be an HTTP token, which also keeps it free of the
/// `:` and line breaks of the stored header block, so both evaluators split headers alike.
fn header(parsed: &Value, value_at: usize) -> Result<Test, FilterError> {
    // Where the value's character `n` is in the input (one past its end for `n` = length).
    let column_of = |n: usize| parsed.positions.get(n).map_or(value_at + n, |&p| p);
    let (name, text) = match parsed.text.split_once('=') {
        Some((name, text)) => (name, Some(text)),
        None => (parsed.text.as_str(), None),
    };
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        return Err(error(
            value_at,
            "header: needs a header name, e.g. header:X-Foo=bar",
        ));
    }
    if let Some(offset) = name.chars().position(|c| !is_token_char(c)) {
        return Err(error(
            column_of(offset),
            format!("\"{name}\" is not a header name (letters, digits and -_.!#$%&'*+^`|~ only)"),
        ));
    }
    if text == Some("") {
        return Err(error(
            column_of(name.chars().count()),
            format!("nothing after \"=\"; write header:{name} to ask only for the header"),
        ));
    }
    Ok(Test::Header {
        name: name.to_string(),
        value: text.map(str::to_string),
    })
}
