//! An answer's body as Vobiz reads it. Vobiz asks for gzip (`Accept-Encoding: gzip`), so a
//! local server (or a proxy in front of it) may well send its XML gzipped; read as it came,
//! that XML would be judged broken.

use std::borrow::Cow;
use std::io::Read;

/// The body with its `Content-Encoding` undone, at most `limit` bytes of it and one more (so
/// that a size check still sees it is too large, and a small bomb stays small). The error
/// says why Vobiz could not read it: a coding it did not ask for, or gzip that does not
/// decode.
pub fn decoded<'a>(
    content_encoding: Option<&str>,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, String> {
    let coding = content_encoding.map(|c| c.trim().to_ascii_lowercase());
    match coding.as_deref() {
        None | Some("" | "identity") => Ok(Cow::Borrowed(body)),
        Some("gzip" | "x-gzip") => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take((limit as u64).saturating_add(1))
                .read_to_end(&mut plain)
                .map_err(|e| format!("Content-Encoding gzip, but the body does not decode: {e}"))?;
            Ok(Cow::Owned(plain))
        }
        Some(other) => Err(format!(
            "Content-Encoding {other}: Vobiz asks for gzip only (Accept-Encoding: gzip), so it \
             cannot read this answer"
        )),
    }
}

/// `data` gzipped, for tests of what reads it.
#[cfg(test)]
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_undone_and_what_vobiz_did_not_ask_for_is_named() {
        let xml = b"<Response><Speak>hi</Speak></Response>";
        assert_eq!(decoded(None, xml, 1024).unwrap().as_ref(), xml);
        assert_eq!(decoded(Some("identity"), xml, 1024).unwrap().as_ref(), xml);
        assert_eq!(
            decoded(Some("GZIP"), &gzip(xml), 1024).unwrap().as_ref(),
            xml
        );
        let br = decoded(Some("br"), xml, 1024).unwrap_err();
        assert!(
            br.contains("Content-Encoding br: Vobiz asks for gzip only"),
            "{br}"
        );
        let broken = decoded(Some("gzip"), xml, 1024).unwrap_err();
        assert!(broken.contains("does not decode"), "{broken}");
        // A bomb stops one byte past the limit.
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert_eq!(decoded(Some("gzip"), &bomb, 1000).unwrap().len(), 1001);
    }
}
