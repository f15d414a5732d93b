//! Where the body of a request being served ends in the bytes that follow its head, counted as
//! they arrive: what comes after it is the next request, pipelined (see `refusal`). A body
//! declared by `Content-Length` ends after that many bytes; a chunked one after its last chunk
//! and trailers, which [`Chunks`] follows a byte at a time across reads.

/// What is left of the body of the request taken last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyLeft {
    /// Where it ends cannot be told (a head not kept whole, chunks hyper would refuse).
    #[default]
    Unknown,
    /// This many bytes, then the next request.
    Bytes(usize),
    /// Chunks, read this far.
    Chunked(Chunks),
}

impl BodyLeft {
    /// Counts `read` off the body: how many of its bytes are body (the rest, if any, follows
    /// the body's end). Where the end is unknown, nothing is counted.
    pub fn count_off(&mut self, read: &[u8]) -> usize {
        match self {
            BodyLeft::Unknown => 0,
            BodyLeft::Bytes(left) => {
                let body = (*left).min(read.len());
                *left -= body;
                body
            }
            BodyLeft::Chunked(chunks) => match chunks.feed(read) {
                Fed::End(body) => {
                    *self = BodyLeft::Bytes(0);
                    body
                }
                Fed::More => read.len(),
                Fed::Invalid => {
                    // hyper refuses such a body; from here nothing is taken for a request.
                    *self = BodyLeft::Unknown;
                    read.len()
                }
            },
        }
    }

    /// Whether the end is known and reached: what follows is the next request.
    pub fn ended(&self) -> bool {
        *self == BodyLeft::Bytes(0)
    }

    /// Whether the end is known and bytes are still to come before it (a sender may still be
    /// sending them); a chunked body counts until its last chunk is read.
    pub fn unread(&self) -> bool {
        matches!(self, BodyLeft::Bytes(1..) | BodyLeft::Chunked(_))
    }

    /// Whether where the body ends is known, so that what follows it can be told apart.
    pub fn known(&self) -> bool {
        *self != BodyLeft::Unknown
    }
}

/// Where a reader of `Transfer-Encoding: chunked` is: in a size line, in a chunk's data, at
/// the line end after it, or in the trailers after the last chunk. Lenient where hyper is
/// (a bare LF ends a line, a size may be followed by spaces and extensions), strict where a
/// count could go wrong: anything else is [`Fed::Invalid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunks {
    Size { size: u64, tail: SizeTail },
    Data(u64),
    DataEnd,
    Trailers { line_start: bool },
}

/// Where in a chunk-size line the reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeTail {
    /// Before any digit.
    Start,
    Digits,
    /// Whitespace after the digits: more of it, or an extension, may follow.
    Spaces,
    /// A `;extension`: anything up to the line's end.
    Extension,
}

/// What feeding bytes to [`Chunks`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// The body ends after this many of the bytes fed.
    End(usize),
    /// All of them are body; more is to come.
    More,
    /// Not a chunked body hyper would read.
    Invalid,
}

impl Default for Chunks {
    fn default() -> Chunks {
        Chunks::Size {
            size: 0,
            tail: SizeTail::Start,
        }
    }
}

impl Chunks {
    /// Reads `bytes` on from where the reader is.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut at = 0;
        while at < bytes.len() {
            if let Chunks::Data(left) = self {
                // Data is skipped by count, never looked at.
                let skip = (*left).min((bytes.len() - at) as u64);
                *left -= skip;
                at += skip as usize;
                if *left == 0 {
                    *self = Chunks::DataEnd;
                }
                continue;
            }
            let byte = bytes[at];
            at += 1;
            let next = match (*self, byte) {
                (_, b'\r') => Some(*self),
                (
                    Chunks::Size {
                        tail: SizeTail::Start,
                        ..
                    },
                    b'\n',
                ) => None,
                (Chunks::Size { size: 0, .. }, b'\n') => {
                    Some(Chunks::Trailers { line_start: true })
                }
                (Chunks::Size { size, .. }, b'\n') => Some(Chunks::Data(size)),
                (
                    Chunks::Size {
                        tail: SizeTail::Extension,
                        ..
                    },
                    _,
                ) => Some(*self),
                (Chunks::Size { size, tail }, b';') if tail != SizeTail::Start => {
                    Some(Chunks::Size {
                        size,
                        tail: SizeTail::Extension,
                    })
                }
                (Chunks::Size { size, tail }, b' ' | b'\t') if tail != SizeTail::Start => {
                    Some(Chunks::Size {
                        size,
                        tail: SizeTail::Spaces,
                    })
                }
                (
                    Chunks::Size {
                        size,
                        tail: SizeTail::Start | SizeTail::Digits,
                    },
                    digit,
                ) if digit.is_ascii_hexdigit() => {
                    let value = u64::from((digit as char).to_digit(16).unwrap_or(0));
                    size.checked_mul(16)
                        .and_then(|size| size.checked_add(value))
                        .map(|size| Chunks::Size {
                            size,
                            tail: SizeTail::Digits,
                        })
                }
                (Chunks::Size { .. }, _) => None,
                (Chunks::DataEnd, b'\n') => Some(Chunks::default()),
                (Chunks::DataEnd, _) => None,
                (Chunks::Trailers { line_start: true }, b'\n') => return Fed::End(at),
                (Chunks::Trailers { .. }, b'\n') => Some(Chunks::Trailers { line_start: true }),
                (Chunks::Trailers { .. }, _) => Some(Chunks::Trailers { line_start: false }),
                (Chunks::Data(_), _) => Some(*self), // skipped above
            };
            match next {
                Some(state) => *self = state,
                None => return Fed::Invalid,
            }
        }
        Fed::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `piece` bytes: where the body was found to end.
    fn end_in_pieces(stream: &[u8], piece: usize) -> Option<usize> {
        let mut left = BodyLeft::Chunked(Chunks::default());
        let mut seen = 0;
        for part in stream.chunks(piece) {
            let body = left.count_off(part);
            if left.ended() {
                return Some(seen + body);
            }
            if !left.known() {
                return None;
            }
            seen += part.len();
        }
        None
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_in_any_pieces() {
        let next = b"GET /next HTTP/1.1\r\n\r\n";
        let mut big = b"FF\r\n".to_vec(); // sizes in either case
        big.extend([b'z'; 255]);
        big.extend(b"\r\n0\r\n\r\n");
        for stream in [
            &b"3\r\nabc\r\n0\r\n\r\n"[..],
            b"A;name=value\r\n0123456789\r\n1 \t;x\r\nx\r\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\nTrailer: yes\r\nOther: no\r\n\r\n",
            b"3\nab\n\n0\n\n", // bare line feeds; data may hold them
            b"000\r\n\r\n",    // an empty body
            &big,
        ] {
            let mut with_next = stream.to_vec();
            with_next.extend_from_slice(next);
            for piece in [1, 2, 3, 7, with_next.len()] {
                assert_eq!(
                    end_in_pieces(&with_next, piece),
                    Some(stream.len()),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }

    #[test]
    fn what_hyper_would_refuse_leaves_the_end_unknown() {
        for stream in [
            &b"x\r\n"[..],
            b"\r\n3\r\nabc\r\n",
            b"3\r\nabcd\r\n",
            b"fffffffffffffffff\r\n",
            b"3 4\r\nabc\r\n0\r\n\r\n",
            b";x\r\n",
        ] {
            assert_eq!(end_in_pieces(stream, 1), None, "{stream:?}");
        }
        let mut unfinished = BodyLeft::Chunked(Chunks::default());
        assert_eq!(unfinished.count_off(b"5\r\nab"), 5);
        assert!(unfinished.unread() && !unfinished.ended());
    }

    #[test]
    fn a_declared_length_is_counted_off() {
        let mut left = BodyLeft::Bytes(5);
        assert_eq!(left.count_off(b"abc"), 3);
        assert!(left.unread());
        assert_eq!(left.count_off(b"deNEXT"), 2);
        assert!(left.ended() && !left.unread());
        assert_eq!(BodyLeft::Unknown.count_off(b"abc"), 0);
    }
}
