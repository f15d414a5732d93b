//! A filter as a parameterised SQL `WHERE` clause over the `exchanges` table. User text is
//! only ever a bound parameter; the clause text comes from this file alone.
//!
//! Each term is the twin of its in-memory test in `eval.rs`:
//! - case-insensitive comparisons use `lower` and `COLLATE NOCASE`, which fold ASCII only,
//!   exactly like `to_ascii_lowercase` and `eq_ignore_ascii_case`;
//! - substring tests are `instr` over BLOBs (needles bound as BLOBs), a plain byte search
//!   that no encoding or NUL byte can disturb;
//! - globs are SQLite `GLOB` with `[` escaped, so only `*` and `?` are wildcards;
//! - the `header:` term needs one header line's value, which SQL cannot split out of the
//!   stored block exactly, so it calls [`HEADER_FUNCTION`], a Rust function registered on the
//!   connection by [`register_functions`] that shares the in-memory code.
//!
//! SQL comparisons with NULL are NULL, and `NOT NULL` is NULL too, which would drop rows that
//! a negated term should keep (`!status:5xx` on a pending exchange); negated terms are
//! therefore wrapped in `coalesce(…, 0)`.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use super::{eval, Filter, Test};

/// Name of the SQL function behind `header:` terms:
/// `vt_filter_header(request_headers, name, text_or_null)` → 1 or 0.
pub(crate) const HEADER_FUNCTION: &str = "vt_filter_header";

/// Name of the SQL function behind bare words' body test, which also looks in the form-decoded
/// body: `vt_filter_body_text(request_body, lower_case_needle)` → 1 or 0.
pub(crate) const BODY_TEXT_FUNCTION: &str = "vt_filter_body_text";

/// A `WHERE` clause with anonymous `?` parameters, and their values in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WhereClause {
    pub sql: String,
    pub params: Vec<Value>,
}

impl Filter {
    /// The filter as a `WHERE` clause; `1` for the empty filter.
    pub(crate) fn to_sql(&self) -> WhereClause {
        let mut params = Vec::new();
        let mut parts = Vec::new();
        for term in &self.terms {
            let sql = term_sql(&term.test, &mut params);
            parts.push(if term.negated {
                format!("NOT coalesce({sql}, 0)")
            } else {
                format!("({sql})")
            });
        }
        let sql = if parts.is_empty() {
            "1".to_string()
        } else {
            parts.join(" AND ")
        };
        WhereClause { sql, params }
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

fn blob(value: &str) -> Value {
    Value::Blob(value.as_bytes().to_vec())
}

fn term_sql(test: &Test, params: &mut Vec<Value>) -> String {
    match test {
        Test::Text(needle) => {
            params.extend([blob(needle), blob(needle), blob(needle)]);
            format!(
                "{BODY_TEXT_FUNCTION}(CAST(target AS BLOB), ?) \
             OR instr(CAST(lower(coalesce(event, '')) AS BLOB), ?) > 0 \
             OR {BODY_TEXT_FUNCTION}(request_body, ?)"
            )
        }
        Test::Event(event) => {
            params.push(text(event));
            "event = ? COLLATE NOCASE".into()
        }
        Test::CallPrefix(prefix) => {
            // A range of the lower-cased CallUUID, which its index (schema 6) answers: the
            // values that start with the lower-cased prefix sort from it up to (not including)
            // the prefix with its last character one higher.
            let low = prefix.to_ascii_lowercase();
            let sql = match next_after_prefix(&low) {
                Some(high) => {
                    params.extend([text(&low), Value::Text(high)]);
                    "lower(call_uuid) >= ? AND lower(call_uuid) < ?"
                }
                // No character sorts after the last one (U+10FFFF): compare the start.
                None => {
                    params.extend([text(&low), text(&low)]);
                    "substr(lower(call_uuid), 1, length(?)) = ?"
                }
            };
            format!("call_uuid IS NOT NULL AND {sql}")
        }
        Test::Method(method) => {
            params.push(text(method));
            "method = ? COLLATE NOCASE".into()
        }
        Test::StatusNone => "status IS NULL".into(),
        Test::Status { min, max } => {
            params.extend([Value::Integer((*min).into()), Value::Integer((*max).into())]);
            "status BETWEEN ? AND ?".into()
        }
        Test::Signature(status) => {
            params.push(text(status.as_str()));
            "signature = ?".into()
        }
        Test::Scheme(scheme) => {
            params.push(text(scheme.as_str()));
            "signature_scheme = ?".into()
        }
        Test::PathExact(path) => {
            params.push(text(path));
            "path = ?".into()
        }
        Test::PathGlob(pattern) => {
            // Only `[` is special to GLOB beyond our `*` and `?`.
            params.push(Value::Text(pattern.replace('[', "[[]")));
            "path GLOB ?".into()
        }
        Test::Header { name, value } => {
            params.push(text(name));
            params.push(value.as_deref().map_or(Value::Null, text));
            format!("{HEADER_FUNCTION}(request_headers, ?, ?)")
        }
        Test::Body(needle) => {
            params.push(blob(needle));
            "instr(request_body, ?) > 0".into()
        }
        Test::Outcome(outcomes) => {
            params.extend(outcomes.iter().map(|o| text(o.as_str())));
            let marks = vec!["?"; outcomes.len()].join(", ");
            format!("outcome IN ({marks})")
        }
        Test::Flag(flag) => {
            // `flags` is a comma-separated list; commas around both sides make it whole-word.
            params.push(Value::Text(format!(",{},", flag.as_str())));
            "instr(',' || flags || ',', ?) > 0".into()
        }
        Test::Finding(wanted) => {
            // `findings` is serde's compact JSON of {rule, severity, message}: a quote inside
            // a message is escaped, so `"rule":"x"` appears only as a rule's own.
            let field = match crate::checks::Severity::named(wanted) {
                Some(_) => "severity",
                None => "rule",
            };
            params.push(Value::Text(format!("\"{field}\":\"{wanted}\"")));
            "instr(coalesce(findings, ''), ?) > 0".into()
        }
        Test::Id { min, max } => {
            params.extend([Value::Integer(*min), Value::Integer(*max)]);
            "id BETWEEN ? AND ?".into()
        }
        Test::ReplayOf(id) => {
            params.push(Value::Integer(*id));
            "replay_of = ?".into()
        }
    }
}

/// The first string after every string that starts with `prefix` (in SQLite's BINARY order,
/// which is code point order for UTF-8): `prefix` with its last character one higher. `None`
/// for the empty prefix (everything matches) and when no character is higher.
fn next_after_prefix(prefix: &str) -> Option<String> {
    let last = prefix.chars().next_back()?;
    let higher = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32)?;
    let mut next = prefix[..prefix.len() - last.len_utf8()].to_string();
    next.push(higher);
    Some(next)
}

/// Registers [`HEADER_FUNCTION`] and [`BODY_TEXT_FUNCTION`] on `conn`;
/// [`crate::store::StoreReader`] does it at open.
pub(crate) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        BODY_TEXT_FUNCTION,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let (ValueRef::Blob(body) | ValueRef::Text(body)) = ctx.get_raw(0) else {
                return Ok(false);
            };
            let (ValueRef::Blob(needle) | ValueRef::Text(needle)) = ctx.get_raw(1) else {
                return Ok(false);
            };
            Ok(eval::body_contains_ignoring_case(body, needle))
        },
    )?;
    conn.create_scalar_function(
        HEADER_FUNCTION,
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            // Rows written by this tool hold a BLOB; accept TEXT too (a hand-edited store).
            let block = match ctx.get_raw(0) {
                ValueRef::Blob(b) | ValueRef::Text(b) => b,
                _ => return Ok(false),
            };
            let ValueRef::Text(name) = ctx.get_raw(1) else {
                return Ok(false);
            };
            let name = std::str::from_utf8(name).unwrap_or_default();
            let wanted = match ctx.get_raw(2) {
                ValueRef::Text(v) => Some(std::str::from_utf8(v).unwrap_or_default()),
                _ => None,
            };
            Ok(eval::header_in_block(block, name, wanted))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_bind_every_value_and_wrap_negations() {
        let filter = Filter::parse(r#"!status:5xx "it's" call:a*b?[c"#).unwrap();
        let clause = filter.to_sql();
        assert_eq!(
            clause.sql,
            "NOT coalesce(status BETWEEN ? AND ?, 0) AND (vt_filter_body_text(CAST(target AS BLOB), ?) \
             OR instr(CAST(lower(coalesce(event, '')) AS BLOB), ?) > 0 \
             OR vt_filter_body_text(request_body, ?)) AND (call_uuid IS NOT NULL \
             AND lower(call_uuid) >= ? AND lower(call_uuid) < ?)"
        );
        assert!(
            !clause.sql.contains("it's"),
            "user text is never in the SQL"
        );
        assert_eq!(clause.params.len(), 7);
        assert_eq!(clause.params[5], Value::Text("a*b?[c".into()));
        assert_eq!(clause.params[6], Value::Text("a*b?[d".into()));
        assert_eq!(next_after_prefix("7d1c"), Some("7d1d".into()));
        assert_eq!(next_after_prefix("a\u{d7ff}"), Some("a\u{e000}".into()));
        assert_eq!(next_after_prefix("\u{10ffff}"), None);
        assert_eq!(next_after_prefix(""), None);
        assert_eq!(Filter::default().to_sql().sql, "1");
    }
}
