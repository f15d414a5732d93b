//! What a connection's HTTP error means, in the log and the inspector.
//!
//! hyper's HTTP/2 errors read "connection error detected: unspecific protocol error
//! detected", which names neither the HTTP/2 error code the client was sent (what its own
//! logs will show) nor the kinds of mistake behind it. HTTP/1 errors read well as they are.

use h2::Reason;

/// Why a connection ended in error: the HTTP/2 error code and what it means when HTTP/2
/// ended it, else the error chain.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    match h2_error(error) {
        Some(h2) => describe_h2(h2).unwrap_or_else(|| chain(error)),
        None => chain(error),
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    format!("HTTP error: {}", crate::forward::error_chain(error))
}

/// The HTTP/2 error under hyper's.
fn h2_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e h2::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        next = error.source();
    }
    None
}

fn describe_h2(error: &h2::Error) -> Option<String> {
    let reason = error.reason()?;
    if error.is_library() {
        // We found the client at fault and closed the connection (or its stream) with it.
        let ended = match error.is_go_away() {
            true => "the connection was closed with GOAWAY",
            false => "the stream was reset with RST_STREAM",
        };
        return Some(format!(
            "HTTP/2 protocol error: {}; {ended} {reason:?}",
            client_fault(reason)
        ));
    }
    if error.is_remote() {
        return Some(format!(
            "HTTP/2: the client closed the connection with error {reason:?} ({})",
            reason.description()
        ));
    }
    Some(format!(
        "HTTP/2 protocol error {reason:?}: {}",
        client_fault(reason)
    ))
}

/// What the client did, for an error code the listener's HTTP/2 side sent it.
fn client_fault(reason: Reason) -> String {
    let what = match reason {
        Reason::PROTOCOL_ERROR => {
            "the client broke HTTP/2's rules (a malformed frame or SETTINGS, a stream id even or \
             used before, a header name in upper case or one HTTP/2 forbids, data on a closed \
             stream)"
        }
        Reason::FRAME_SIZE_ERROR => "the client sent a frame of the wrong size",
        Reason::COMPRESSION_ERROR => {
            "the client's header block could not be decoded (HPACK), or decodes to more than \
             the limit"
        }
        Reason::FLOW_CONTROL_ERROR => {
            "the client sent more data than its flow-control window allowed"
        }
        Reason::ENHANCE_YOUR_CALM => {
            "the client behaved like a flood (too many stream resets, CONTINUATION frames or \
             errors), so it was cut off"
        }
        Reason::SETTINGS_TIMEOUT => "the client never acknowledged the listener's SETTINGS",
        other => return format!("the client's HTTP/2 failed: {}", other.description()),
    };
    what.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_a_client_can_be_sent_reads_as_what_it_did() {
        for reason in [
            Reason::PROTOCOL_ERROR,
            Reason::FRAME_SIZE_ERROR,
            Reason::COMPRESSION_ERROR,
            Reason::FLOW_CONTROL_ERROR,
            Reason::ENHANCE_YOUR_CALM,
            Reason::SETTINGS_TIMEOUT,
            Reason::INTERNAL_ERROR,
        ] {
            let told = client_fault(reason);
            assert!(told.starts_with("the client"), "{reason:?}: {told}");
        }
    }

    #[test]
    fn an_error_that_is_not_http2_keeps_its_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad bytes");
        assert_eq!(describe(&io), "HTTP error: bad bytes");
    }
}
