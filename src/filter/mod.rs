//! The filter expression language: what the terminal UI takes after `/` and what
//! `list --filter`, `export --filter` and `replay --filter` take.
//!
//! A filter is a list of terms separated by whitespace; an exchange matches when it matches
//! **every** term. A term prefixed with `!` matches the exchanges the term alone does not
//! (so `!status:5xx` includes exchanges that have no status yet). Double quotes let a value
//! hold spaces (`body:"Normal Hangup"`); inside quotes `\"` is a quote and `\\` a backslash.
//! The empty filter matches everything.
//!
//! | term | matches exchanges whose … |
//! |---|---|
//! | `hangup` (a bare word) | path and query, Vobiz `Event` or request body (as sent, or form-decoded: `john doe` finds `John+Doe`) contains the text, ignoring ASCII case |
//! | `"two words"`, `"a:b"` | same, for text with spaces or a colon (a quoted word is never a keyword) |
//! | `event:Hangup` | `Event` field equals the value, ignoring ASCII case |
//! | `call:7d1c2c5e` | `CallUUID` equals the value or starts with it, ignoring ASCII case |
//! | `method:get` | method equals the value, ignoring ASCII case |
//! | `status:200`, `status:5xx` | status is 200; status is 500–599 |
//! | `status:>=400`, `status:>500`, `status:<300`, `status:<=204`, `status:=200` | status compares so; no status never matches |
//! | `status:none` | no response status yet (pending, or the tool stopped mid-way) |
//! | `sig:valid` | signature verdict: `valid`, `invalid`, `unsigned` or `unchecked` |
//! | `scheme:V3` | deciding signature header: `V3`, `V2`, `MA-V3`, `MA-V2` (or `V1`) |
//! | `path:/vobiz/answer`, `path:/vobiz/*`, `path:/cb?` | path (no query) equals the value; with `*` (any run) or `?` (one character) it is a glob (case-sensitive) |
//! | `header:X-Foo` | has a request header named `X-Foo` (name ignores case) |
//! | `header:X-Foo=bar` | has a request header `X-Foo` whose value contains `bar` (case-sensitive) |
//! | `body:Digits=1` | request body contains the text (bytes, case-sensitive) |
//! | `outcome:forwarded` | outcome: `forwarded`, `rejected`, `too_large`, `client_error`, `upstream_error`, `upstream_timeout`, `pending` |
//! | `flag:nonce_reused` | has the flag: `slow`, `nonce_reused`, `replay`, `upstream_error`, `rejected`, `too_large`, `client_error`, `imported`, `duplicate`, `sender_gone`, `interrupted` |
//! | `slow`, `replay`, `reused` | shorthands for `flag:slow`, `flag:replay`, `flag:nonce_reused` |
//! | `finding:xml-root`, `finding:error` | the Vobiz checks found something by this rule, or of this severity (`error`, `warning`, `info`) |
//! | `error` | outcome is `upstream_error`, `upstream_timeout` or `client_error` |
//! | `id:42`, `id:>100`, `id:<=20`, `id:5..20`, `id:5..`, `id:..20` | exchange id compares so (ranges include both ends) |
//! | `replay_of:42` | is a replay of exchange 42 |
//!
//! Field names and keywords ignore case (`Event:Hangup`, `SLOW`). A bare word that starts like
//! a field name and has a colon (`http://x`) must be quoted to search for it as text.
//! Unknown fields and malformed values are errors that give the 1-based column (in characters)
//! and list what is valid.
//!
//! Examples:
//!
//! ```text
//! event:Hangup status:5xx          Hangup callbacks your server failed
//! !sig:valid path:/vobiz/*         everything under /vobiz/ that did not verify
//! call:7d1c2c5e slow               one call's slow answers
//! body:"HangupCause=NORMAL_CLEARING" !replay
//! header:user-agent=Vobiz id:1000..2000
//! ```
//!
//! The same filter runs in two places that must agree: [`Filter::matches`] on an exchange in
//! memory (live events in the UI), and as a parameterised SQL `WHERE` clause over the store
//! (`StoreReader::page` and friends). `tests/filter.rs` checks that they agree.

mod eval;
#[cfg(test)]
mod eval_tests;
mod parse;
#[cfg(test)]
mod parse_tests;
pub(crate) mod sql;

use crate::exchange::{Exchange, ExchangeId, Flag, Outcome};
use crate::signature::{Scheme, VerdictStatus};
use crate::store::ExchangeSummary;

/// A parsed filter expression. The default filter is empty and matches every exchange.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    text: String,
    terms: Vec<Term>,
}

/// Why a filter expression did not parse: a sentence that lists what is valid, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at column {column})")]
pub struct FilterError {
    /// 1-based position of the offending character, counted in characters (not bytes).
    pub column: usize,
    /// What is wrong, and what would be valid.
    pub message: String,
}

/// One term: a test, possibly negated.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    negated: bool,
    test: Test,
}

/// What a term tests. Values are stored in the form both evaluators compare with.
#[derive(Clone, Debug, PartialEq)]
enum Test {
    /// Free text, already ASCII-lower-cased: in path, event or body, ignoring ASCII case.
    Text(String),
    /// `Event` equals, ignoring ASCII case.
    Event(String),
    /// `CallUUID` starts with (an exact value is its own prefix).
    CallPrefix(String),
    /// Method equals, ignoring ASCII case.
    Method(String),
    /// No status.
    StatusNone,
    /// Status within these inclusive bounds (absent status: no match).
    Status {
        min: u16,
        max: u16,
    },
    Signature(VerdictStatus),
    Scheme(Scheme),
    PathExact(String),
    /// `*` and `?` wildcards only; every other character is literal.
    PathGlob(String),
    /// A request header by name (ASCII case ignored), optionally whose value contains `value`.
    Header {
        name: String,
        value: Option<String>,
    },
    /// Request body contains these bytes.
    Body(String),
    /// Outcome is one of these.
    Outcome(Vec<Outcome>),
    Flag(Flag),
    /// A finding of the Vobiz checks by this rule, or of this severity (`error`, `warning`,
    /// `info`); lower case.
    Finding(String),
    /// Id within these inclusive bounds (empty when `min > max`).
    Id {
        min: ExchangeId,
        max: ExchangeId,
    },
    ReplayOf(ExchangeId),
}

impl Filter {
    /// Parses a filter expression. Empty (or all-whitespace) text is the empty filter.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        Ok(Filter {
            text: text.to_string(),
            terms: parse::terms(text)?,
        })
    }

    /// True when the filter has no terms and so matches every exchange.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The text the filter was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a whole exchange (headers and body included) matches.
    pub fn matches(&self, exchange: &Exchange) -> bool {
        let record = eval::Record::of_exchange(exchange);
        self.terms
            .iter()
            .all(|term| term.eval(&record) == Some(true))
    }

    /// `Some(answer)` when the summary's fields decide: when no term needs the headers or the
    /// body (header, body and free-text terms), or when a term that needs neither already
    /// fails. `None` otherwise: fetch the whole exchange and use [`Filter::matches`].
    pub fn matches_summary(&self, summary: &ExchangeSummary) -> Option<bool> {
        let record = eval::Record::of_summary(summary);
        let mut decided = true;
        for term in &self.terms {
            match term.eval(&record) {
                Some(false) => return Some(false),
                Some(true) => {}
                None => decided = false,
            }
        }
        decided.then_some(true)
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Filter, FilterError> {
        Filter::parse(text)
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
