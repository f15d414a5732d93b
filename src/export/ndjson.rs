//! NDJSON export: one JSON object per exchange per line, the same object as `show --json`
//! ([`report::exchange_json`](crate::report::exchange_json)), so `jq` scripts work on both.
//! Bodies that are not UTF-8 appear as base64 there, so nothing is lost.

use std::io::{self, Write};

use crate::exchange::Exchange;
use crate::report::exchange_json;

/// Streams exchanges as NDJSON to `out`, one line each.
pub struct NdjsonWriter<W: Write> {
    out: W,
}

impl<W: Write> NdjsonWriter<W> {
    /// Starts a stream; NDJSON has no header.
    pub fn new(out: W) -> Self {
        NdjsonWriter { out }
    }

    /// Writes one exchange as one line.
    pub fn write(&mut self, exchange: &Exchange) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &exchange_json(exchange))?;
        self.out.write_all(b"\n")
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_exchange() {
        let exchange = crate::export::tests::sample();
        let mut writer = NdjsonWriter::new(Vec::new());
        writer.write(&exchange).unwrap();
        writer.write(&exchange).unwrap();
        let bytes = writer.finish().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 2);
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["method"], "POST");
        }
    }
}
