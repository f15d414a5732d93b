//! Getting exchanges out of the store and back in: `export` to HAR 1.2 (browser dev tools,
//! Insomnia) or NDJSON, `import` of HAR files, and copy-as-curl.
//!
//! Export streams: it lists the selected ids, then reads and writes one exchange at a time,
//! so its memory stays flat however large the store is. A file is written under a temporary
//! name and renamed when complete, so a failed export never leaves a truncated file behind.
//! Import converts the whole HAR file first (a malformed entry stores nothing), then inserts.

mod curl;
mod har;
mod har_import;
mod iso;
mod ndjson;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

pub use curl::{curl_command, printf_command, shell_quote};
pub use har::{entry as har_entry, HarWriter};
pub use har_import::{parse_har, parse_har_file};
pub use ndjson::NdjsonWriter;

use crate::cli::{ExportArgs, ImportArgs, StoreArg};
use crate::exchange::{Exchange, ExchangeId};
use crate::filter::Filter;
use crate::output::say;
use crate::store::{Store, StoreReader};

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One HAR 1.2 document.
    Har,
    /// One `show --json` object per line.
    Ndjson,
}

fn store_path(arg: &StoreArg) -> PathBuf {
    arg.store.clone().unwrap_or_else(crate::store::default_path)
}

/// Creates an export file readable by its owner only: it holds what the store holds, the
/// credentials of `Authorization` headers included. `replace`: an existing file is emptied,
/// else it is an error.
pub(crate) fn create_private(path: &Path, replace: bool) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    match replace {
        true => options.create(true).truncate(true),
        false => options.create_new(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// `vobiz-tunnel export`: writes the selected exchanges, then says how many on stderr
/// (stdout may be the export itself).
pub fn export_command(args: &ExportArgs) -> anyhow::Result<i32> {
    let (format, file) = match (&args.har, &args.ndjson) {
        (Some(file), None) => (Format::Har, file),
        (None, Some(file)) => (Format::Ndjson, file),
        _ => bail!("give exactly one of --har FILE and --ndjson FILE"),
    };
    let reader = StoreReader::open(&store_path(&args.store))?;
    let ids = selected_ids(&reader, args.filter.as_deref())?;
    let (count, name) = if file.as_os_str() == "-" {
        let out = BufWriter::new(std::io::stdout().lock());
        match export(&reader, &ids, format, out) {
            Ok((count, _)) => (count, "standard output".to_string()),
            // The reader stopped reading (`| head`): end quietly, as Unix tools do.
            Err(e) if is_broken_pipe(&e) => return Ok(0),
            Err(e) => return Err(e.context("writing standard output")),
        }
    } else {
        (
            export_file(&reader, &ids, format, file)?,
            file.display().to_string(),
        )
    };
    eprintln!("exported {} to {name}", n_exchanges(count));
    Ok(0)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The ids to export, ascending: all of them, or those matching `--filter`.
fn selected_ids(reader: &StoreReader, filter: Option<&str>) -> anyhow::Result<Vec<ExchangeId>> {
    let filter = match filter {
        None => Filter::default(),
        Some(expr) => Filter::parse(expr).map_err(|e| anyhow!("--filter {expr:?}: {e}"))?,
    };
    Ok(reader.ids_matching(&filter)?)
}

/// Writes exchanges `ids` (skipping any deleted meanwhile) to `out` in `format`, reading one
/// at a time. Returns how many were written, and the writer.
pub fn export<W: Write>(
    reader: &StoreReader,
    ids: &[ExchangeId],
    format: Format,
    out: W,
) -> anyhow::Result<(u64, W)> {
    let mut count = 0;
    let mut each = |write: &mut dyn FnMut(&Exchange) -> std::io::Result<()>| {
        for &id in ids {
            let Some(exchange) = reader.get(id)? else {
                continue;
            };
            write(&exchange)?;
            count += 1;
        }
        anyhow::Ok(())
    };
    let out = match format {
        Format::Har => {
            let mut writer = HarWriter::new(out)?;
            each(&mut |exchange| writer.write(exchange))?;
            writer.finish()?
        }
        Format::Ndjson => {
            let mut writer = NdjsonWriter::new(out);
            each(&mut |exchange| writer.write(exchange))?;
            writer.finish()?
        }
    };
    Ok((count, out))
}

/// Exports into `path` through a temporary file in the same folder, renamed at the end.
fn export_file(
    reader: &StoreReader,
    ids: &[ExchangeId],
    format: Format,
    path: &Path,
) -> anyhow::Result<u64> {
    // A device or pipe (/dev/null, /dev/stdout, a FIFO) cannot be replaced by a rename.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let file = File::options()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let (count, _) = export(reader, ids, format, BufWriter::new(file))
            .with_context(|| format!("exporting to {}", path.display()))?;
        return Ok(count);
    }
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(file_name);
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = path.with_file_name(partial_name);
    let result = create_private(&partial, true)
        .with_context(|| format!("cannot create {}", partial.display()))
        .and_then(|file| export(reader, ids, format, BufWriter::new(file)))
        .and_then(|(count, out)| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(count)
        })
        .and_then(|count| {
            std::fs::rename(&partial, path)?;
            Ok(count)
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.with_context(|| format!("exporting to {}", path.display()))
}

/// `vobiz-tunnel import --har FILE`: every entry becomes a new exchange flagged `imported`,
/// except those the store already holds (unless `--again`).
pub fn import_command(args: &ImportArgs) -> anyhow::Result<i32> {
    let file = &args.har;
    std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let exchanges = parse_har_file(file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = Store::open(&store_path(&args.store))?;
    let known = match args.again {
        true => vec![None; exchanges.len()],
        false => store.reader()?.already_recorded(&exchanges)?,
    };
    let imported = runtime
        .block_on(store_all(&store, exchanges, &known))
        .with_context(|| format!("importing {}", file.display()))?;
    let skipped: Vec<ExchangeId> = known.into_iter().flatten().collect();
    let mut line = match (imported.first(), imported.last()) {
        (Some(first), Some(last)) if first == last => format!("imported 1 exchange as #{first}"),
        (Some(first), Some(last)) => {
            format!("imported {} exchanges as #{first}–#{last}", imported.len())
        }
        _ if skipped.is_empty() => {
            format!("imported 0 exchanges: {} has no entries", file.display())
        }
        _ => "imported 0 exchanges".into(),
    };
    if !skipped.is_empty() {
        line += &format!(
            "; {} already in the store ({}) skipped (--again imports them anyway)",
            n_exchanges(skipped.len() as u64),
            id_list(&skipped)
        );
    }
    say(&line);
    Ok(0)
}

/// "#3", "#3, #9", "#3–#7", "#3–#7, #9, and 12 more": the ids a message names, as runs of
/// consecutive ids, the first eight of them, then how many ids are left.
fn id_list(ids: &[ExchangeId]) -> String {
    const NAMED: usize = 8;
    let mut runs: Vec<(ExchangeId, ExchangeId)> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    let mut named: Vec<String> = runs
        .iter()
        .take(NAMED)
        .map(|&(first, last)| match first == last {
            true => format!("#{first}"),
            false => format!("#{first}–#{last}"),
        })
        .collect();
    if runs.len() > NAMED {
        let more: usize = runs[NAMED..]
            .iter()
            .map(|&(first, last)| (last - first + 1) as usize)
            .sum();
        named.push(format!("and {more} more"));
    }
    named.join(", ")
}

/// "1 exchange", "2 exchanges".
pub(crate) fn n_exchanges(count: u64) -> String {
    match count {
        1 => "1 exchange".into(),
        n => format!("{n} exchanges"),
    }
}

/// Inserts `exchanges` in order and returns their ids. If the store fails part-way, the
/// error says how many (and which) were stored before it.
///
/// Ids carried over from the exporting store are renumbered: a replay imported after its
/// original stays linked to it; one whose original was not imported is linked to nothing
/// (its old `replay_of` would name an unrelated exchange of this store).
///
/// `known[i]` is the row that already records `exchanges[i]`, if any: it is not stored again,
/// and a replay of it imported now is linked to that row.
pub async fn store_all(
    store: &Store,
    exchanges: Vec<Exchange>,
    known: &[Option<ExchangeId>],
) -> anyhow::Result<Vec<ExchangeId>> {
    let total = exchanges.len() - known.iter().flatten().count();
    let mut ids = Vec::with_capacity(total);
    let mut renumbered: HashMap<ExchangeId, ExchangeId> = HashMap::new();
    for (i, mut exchange) in exchanges.into_iter().enumerate() {
        let exported_id = exchange.id.take();
        if let Some(row) = known.get(i).copied().flatten() {
            if let Some(exported_id) = exported_id {
                renumbered.insert(exported_id, row);
            }
            continue;
        }
        exchange.replay_of = exchange
            .replay_of
            .and_then(|original| renumbered.get(&original).copied());
        match store.insert(Arc::new(exchange)).await {
            Ok(inserted) => {
                if let Some(exported_id) = exported_id {
                    renumbered.insert(exported_id, inserted.id);
                }
                ids.push(inserted.id)
            }
            Err(error) => {
                let stored = match (ids.first(), ids.last()) {
                    (Some(first), Some(last)) => format!(" (#{first}–#{last})"),
                    _ => String::new(),
                };
                bail!(
                    "{} of {total} were imported{stored} before the store failed: {error}",
                    n_exchanges(ids.len() as u64)
                );
            }
        }
    }
    store.flush_into_file().await;
    Ok(ids)
}
