//! `vobiz-tunnel replay ID | --filter EXPR [--resign] [--to URL]`: replays from the command
//! line into the same store a running listener (and its UI) uses.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use time::UtcOffset;

use super::{ReplayError, ReplayPlan, Replayer};
use crate::cli::{HostHeader, ReplayArgs};
use crate::config::BaseUrl;
use crate::exchange::{ExchangeId, Outcome};
use crate::forward::Upstream;
use crate::output::{json_line, text_line, write_stdout};
use crate::store::{ExchangeSummary, Store};

/// Replays one exchange or every match of a filter, oldest first. Exit status 1 when a
/// replay got no answer from the server or a 5xx; 0 otherwise.
pub async fn replay_command(args: &ReplayArgs, offset: UtcOffset) -> anyhow::Result<i32> {
    let max = crate::config::MAX_SECONDS;
    if !(args.timeout > 0.0 && args.timeout <= max) {
        bail!(
            "--timeout must be a positive number of seconds, at most {max}, not {}",
            args.timeout
        );
    }
    let path: PathBuf = args
        .store
        .store
        .clone()
        .unwrap_or_else(crate::store::default_path);
    if !path.exists() {
        bail!("no store at {} (pass --store)", path.display());
    }
    let store = Store::open(&path)?;
    let reader = store.reader()?;
    let ids: Vec<ExchangeId> = match (&args.id, &args.filter) {
        (Some(id), _) => vec![*id],
        (None, Some(expression)) if expression.trim().is_empty() => bail!(
            "an empty --filter matches every exchange in the store; say which to replay \
             (e.g. --filter 'event:Hangup status:5xx')"
        ),
        (None, Some(expression)) => selected_ids(&reader, expression)?,
        (None, None) => bail!("name an exchange id or give --filter"),
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let roots: Vec<_> = std::iter::once(args.certs_dir.join(crate::tls::DEV_CA_FILE))
        .chain(crate::config::ca_files("--forward-ca", &args.forward_ca)?)
        .collect();
    let tls = crate::tls::client_config(&roots, &[]);
    let forward = BaseUrl::parse(&args.forward).map_err(|e| anyhow::anyhow!("--forward: {e}"))?;
    let replayer = Replayer {
        store: store.clone(),
        upstream: Upstream::new(
            forward,
            HostHeader::Keep,
            timeout,
            64 * 1024 * 1024,
            tls.clone(),
        ),
        keys: crate::config::keys(&args.tokens)?,
        public_url: match &args.public_url {
            Some(url) => {
                Some(BaseUrl::parse(url).map_err(|e| anyhow::anyhow!("--public-url: {e}"))?)
            }
            None => None,
        },
        events: None,
        timeout,
        tls,
    };
    let plan = ReplayPlan {
        resign: args.resign,
        target: match &args.to {
            Some(url) => Some(BaseUrl::parse(url).map_err(|e| anyhow::anyhow!("--to: {e}"))?),
            None => None,
        },
        edited: None,
    };
    if ids.is_empty() {
        eprintln!("nothing to replay: no exchange matches");
        return Ok(1);
    }
    let mut failures = 0;
    for id in ids {
        let Some(original) = reader.get(id)? else {
            bail!("no exchange #{id} in {}", path.display());
        };
        let replayed = match replayer.replay(&original, &plan).await {
            Ok(replayed) => replayed,
            Err(refused @ ReplayError::NotWhole { .. }) => {
                // The others are still replayed; the exit status says one was not.
                eprintln!("{refused}");
                failures += 1;
                // A script reading the JSON lines gets one for every selected exchange.
                let line = serde_json::json!({"id": null, "replay_of": id, "refused": refused.to_string()});
                if args.json && !write_stdout(&format!("{line}\n"))? {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let summary = ExchangeSummary::of(&replayed);
        // Where it went, when not to the local server: the record keeps the request as the
        // local server would have seen it, and the URL it reached.
        let line = match (args.json, &replayed.sent_to) {
            (true, None) => json_line(&summary),
            (true, Some(url)) => {
                let mut value: serde_json::Value = serde_json::from_str(&json_line(&summary))?;
                value["sent_to"] = serde_json::Value::from(url.as_str());
                value.to_string()
            }
            (false, None) => text_line(&summary, offset),
            (false, Some(url)) => format!("{}  → {url}", text_line(&summary, offset)),
        };
        let failed = !matches!(replayed.outcome, Outcome::Forwarded)
            || replayed.status().is_some_and(|s| s >= 500);
        if failed {
            failures += 1;
        }
        if !write_stdout(&(line + "\n"))? {
            break; // nobody reads on (`| head`): replay no more
        }
    }
    store.flush_into_file().await;
    Ok(if failures > 0 { 1 } else { 0 })
}

fn selected_ids(
    reader: &crate::store::StoreReader,
    expression: &str,
) -> anyhow::Result<Vec<ExchangeId>> {
    let filter = crate::filter::Filter::parse(expression)
        .map_err(|e| anyhow::anyhow!("--filter {expression:?}: {e}"))?;
    Ok(reader.ids_matching(&filter)?)
}
