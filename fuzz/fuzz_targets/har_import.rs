//! HAR import: `export::parse_har` on arbitrary bytes, then everything an imported exchange
//! goes through afterwards (`list`, `show`, `show --json`, NDJSON and HAR export, copy as
//! curl).
//!
//! Properties: nothing panics, whatever the file says (dates, timings, statuses, base64,
//! verdicts); an export of what was imported imports back to the same exchanges (the
//! `_vobizTunnel` object makes our own HAR lossless).

#![no_main]

use libfuzzer_sys::fuzz_target;
use time::UtcOffset;
use vobiz_tunnel::export::{curl_command, parse_har, HarWriter, NdjsonWriter};
use vobiz_tunnel::output::{json_line, text_line};
use vobiz_tunnel::report::exchange_text;
use vobiz_tunnel::store::ExchangeSummary;

fuzz_target!(|data: &[u8]| {
    let Ok(exchanges) = parse_har(data) else {
        return;
    };
    let mut har = HarWriter::new(Vec::new()).expect("writing to memory");
    let mut ndjson = NdjsonWriter::new(Vec::new());
    for exchange in &exchanges {
        let summary = ExchangeSummary::of(exchange);
        let _ = text_line(&summary, UtcOffset::UTC);
        let _ = json_line(&summary);
        let _ = exchange_text(exchange, UtcOffset::UTC);
        let _ = curl_command(exchange, &exchange.request.public_url, None);
        ndjson.write(exchange).expect("writing to memory");
        har.write(exchange).expect("writing to memory");
    }
    ndjson.finish().expect("writing to memory");
    let exported = har.finish().expect("writing to memory");
    let again = parse_har(&exported).unwrap_or_else(|e| {
        panic!(
            "our own export does not import: {e}\n{}",
            String::from_utf8_lossy(&exported)
        )
    });
    assert_eq!(again, exchanges, "export then import changed the exchanges");
});
