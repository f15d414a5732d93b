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

/// Where a reader of `Transfer-Encoding: chunked` is, state for state as hyper's decoder
/// (`proto::h1::decode`, hyper 1.x) reads it: a size line of hex digits, optional whitespace
/// and `;extensions`, ended by CR LF; the data, skipped by count; CR LF; and after the last
/// (empty) chunk, trailer lines up to an empty one. A count that went another way than
/// hyper's would take a body's bytes for the next request, so where hyper would refuse the
/// body this says [`Fed::Invalid`] rather than guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunks {
    state: State,
    /// The size of the chunk whose size line is being read.
    size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
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
        Chunks {
            state: State::Start,
            size: 0,
        }
    }
}

impl Chunks {
    /// Reads `bytes` on from where the reader is.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut at = 0;
        while at < bytes.len() {
            if let State::Data(left) = self.state {
                // Data is skipped by count, never looked at.
                let skip = left.min((bytes.len() - at) as u64);
                at += skip as usize;
                self.state = match left - skip {
                    0 => State::DataCr,
                    left => State::Data(left),
                };
                continue;
            }
            let byte = bytes[at];
            at += 1;
            let digit = (byte as char).to_digit(16).map(u64::from);
            self.state = match (self.state, byte, digit) {
                (State::Start | State::Size, _, Some(digit)) => {
                    match self.size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                        Some(size) => {
                            self.size = size;
                            State::Size
                        }
                        None => return Fed::Invalid,
                    }
                }
                (State::Size | State::SizeLws, b'\t' | b' ', _) => State::SizeLws,
                (State::Size | State::SizeLws, b';', _) => State::Extension,
                (State::Size | State::SizeLws | State::Extension, b'\r', _) => State::SizeLf,
                (State::Extension, b'\n', _) => return Fed::Invalid,
                (State::Extension, _, _) => State::Extension,
                (State::SizeLf, b'\n', _) => match std::mem::take(&mut self.size) {
                    0 => State::EndCr,
                    size => State::Data(size),
                },
                (State::DataCr, b'\r', _) => State::DataLf,
                (State::DataLf, b'\n', _) => State::Start,
                (State::EndCr, b'\r', _) => State::EndLf,
                (State::Trailer, b'\r', _) => State::TrailerLf,
                (State::EndCr | State::Trailer, _, _) => State::Trailer,
                (State::TrailerLf, b'\n', _) => State::EndCr,
                (State::EndLf, b'\n', _) => return Fed::End(at),
                _ => return Fed::Invalid,
            };
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
            // As hyper reads a trailer: a bare line feed does not end its line.
            b"0\r\nTrailer: a\nGET /hidden HTTP/1.1\r\n\r\n",
            b"3\r\na\nb\r\n0\r\n\r\n", // data may hold line feeds
            b"000\r\n\r\n",            // an empty body
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
            b"3\nabc\r\n0\r\n\r\n",     // a size line needs CR LF
            b"3\r\nabc\n0\r\n\r\n",     // so does the end of data
            b"3;ext\nabc\r\n0\r\n\r\n", // an extension cannot hold a line feed
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
