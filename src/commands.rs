//! The offline subcommands: `list`, `show` and `verify`. Each returns its exit status.

use std::path::PathBuf;

use anyhow::bail;
use time::UtcOffset;

use crate::cli::{ListArgs, ShowArgs, StoreArg, VerifyArgs};
use crate::output::{json_line, text_line, write_stdout};
use crate::report::{exchange_json, exchange_text, verdict_text};
use crate::signature::{verify, CallbackRequest, VerdictStatus};
use crate::store::StoreReader;

/// A mistake in what the user asked for (as opposed to the answer being "no"): exit 2, as
/// for the command line itself, so a script can tell it from an invalid signature.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

fn store_path(arg: &StoreArg) -> PathBuf {
    arg.store.clone().unwrap_or_else(crate::store::default_path)
}

/// `vobiz-tunnel list`: the newest exchanges, oldest first.
pub fn list(args: &ListArgs, offset: UtcOffset) -> anyhow::Result<i32> {
    // Parsed before the store is opened: a typo is reported even without a store.
    let filter = match args.filter.as_deref() {
        Some(text) => crate::filter::Filter::parse(text)
            .map_err(|e| anyhow::anyhow!("invalid --filter {text:?}: {e}"))?,
        None => crate::filter::Filter::default(),
    };
    let reader = StoreReader::open(&store_path(&args.store))?;
    let rows = if filter.is_empty() {
        reader.latest(args.limit)?
    } else {
        reader.page(&filter, None, args.limit)?
    };
    if rows.is_empty() && !args.json {
        if filter.is_empty() {
            eprintln!("no exchanges recorded yet in {}", reader.path().display());
        } else {
            eprintln!(
                "no exchanges match {:?} in {}",
                filter.text(),
                reader.path().display()
            );
        }
    }
    let mut out = String::new();
    for row in &rows {
        match args.json {
            true => out.push_str(&json_line(row)),
            false => out.push_str(&text_line(row, offset)),
        }
        out.push('\n');
    }
    write_stdout(&out)?;
    Ok(0)
}

/// `vobiz-tunnel show ID`.
pub fn show(args: &ShowArgs, offset: UtcOffset) -> anyhow::Result<i32> {
    let reader = StoreReader::open(&store_path(&args.store))?;
    let Some(exchange) = reader.get(args.id)? else {
        bail!("no exchange #{} in {}", args.id, reader.path().display());
    };
    let text = match args.json {
        true => serde_json::to_string_pretty(&exchange_json(&exchange))? + "\n",
        false => exchange_text(&exchange, offset),
    };
    write_stdout(&text)?;
    Ok(0)
}

/// Parses `Name: value`.
fn parse_header(text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = text.split_once(':').ok_or_else(|| {
        usage(format!(
            "--header {text:?} is not of the form 'Name: value'"
        ))
    })?;
    let name = name.trim();
    if name.is_empty() {
        return Err(usage(format!("--header {text:?} has no name")));
    }
    if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(usage(format!(
            "--header {text:?}: {name:?} is not an HTTP header name"
        )));
    }
    let value = value.trim();
    if hyper::header::HeaderValue::from_bytes(value.as_bytes()).is_err() {
        return Err(usage(format!(
            "--header {text:?}: the value holds a line break or another control character"
        )));
    }
    Ok((name.to_string(), value.to_string()))
}

/// `vobiz-tunnel verify`: exit 0 when valid, 1 when not.
pub fn verify_command(args: &VerifyArgs) -> anyhow::Result<i32> {
    let keys = crate::config::keys(&args.tokens)?;
    let absolute = args.url.parse::<hyper::Uri>().ok().filter(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    });
    if absolute.is_none() {
        return Err(usage(format!(
            "--url {:?} is not an absolute http(s) URL: give the URL Vobiz called, such as \
             https://hooks.example.com/vobiz/hangup",
            crate::output::without_passwords(&args.url)
        )));
    }
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = match args.body.as_deref() {
        Some(spec) if spec.starts_with('@') => std::fs::read(&spec[1..])
            .map_err(|e| usage(format!("cannot read the body file {}: {e}", &spec[1..])))?,
        Some(text) => text.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let verdict = verify(
        &CallbackRequest {
            method: &args.method.to_ascii_uppercase(),
            url: &args.url,
            headers: &headers,
            body: &body,
            extra_ports: &[],
            other_urls: &[],
        },
        &keys,
    );
    let text = match args.json {
        true => serde_json::to_string_pretty(&verdict)? + "\n",
        false => verdict_text(&verdict),
    };
    write_stdout(&crate::output::without_passwords(&text))?;
    Ok(if verdict.status == VerdictStatus::Valid {
        0
    } else {
        1
    })
}
