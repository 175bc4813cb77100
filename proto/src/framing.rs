//! Line framing: one JSON object per `\n`-terminated line, with a hard cap
//! on what is kept in memory. A line longer than the cap is consumed up to
//! its newline without being buffered and reported as too long, so a client
//! that sends 2 GiB without a newline costs the relay one buffer, not 2 GiB,
//! and the connection stays usable for the next line.

use std::io;

use futures::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// What the next line turned out to be.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// One line, without its newline (nor a `\r` before it).
    Line(Vec<u8>),
    /// A line of `len` bytes, longer than the cap, discarded.
    TooLong { len: usize },
    /// The peer closed its side.
    Eof,
}

pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    limit: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            limit,
        }
    }

    /// Reads the next line. A last line without a newline still counts as a
    /// line, so `printf '{…}' | nc -U` works.
    pub(crate) async fn next(&mut self) -> io::Result<Frame> {
        let mut line = Vec::new();
        let mut len = 0usize;
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok(match len {
                    0 => Frame::Eof,
                    _ => self.finish(line, len),
                });
            }
            let newline = buf.iter().position(|&b| b == b'\n');
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            len += chunk.len();
            if len <= self.limit + 1 {
                // One byte of slack for a `\r` before the newline.
                line.extend_from_slice(chunk);
            } else if !line.is_empty() {
                line = Vec::new();
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.inner.consume_unpin(used);
            if newline.is_some() {
                return Ok(self.finish(line, len));
            }
        }
    }

    fn finish(&self, mut line: Vec<u8>, mut len: usize) -> Frame {
        if line.last() == Some(&b'\r') && len == line.len() {
            line.pop();
            len -= 1;
        }
        if len > self.limit {
            Frame::TooLong { len }
        } else {
            Frame::Line(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], limit: usize) -> Vec<Frame> {
        async_std::task::block_on(async {
            let mut r = LineReader::new(input, limit);
            let mut out = Vec::new();
            loop {
                match r.next().await.unwrap() {
                    Frame::Eof => return out,
                    f => out.push(f),
                }
            }
        })
    }

    #[test]
    fn splits_on_newlines_and_strips_cr() {
        assert_eq!(
            frames(b"{}\n{\"a\":1}\r\nlast", 100),
            [
                Frame::Line(b"{}".to_vec()),
                Frame::Line(b"{\"a\":1}".to_vec()),
                Frame::Line(b"last".to_vec())
            ]
        );
    }

    #[test]
    fn an_oversized_line_is_skipped_and_the_next_one_read() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\n{}\n");
        assert_eq!(
            frames(&input, 10),
            [Frame::TooLong { len: 1000 }, Frame::Line(b"{}".to_vec())]
        );
    }

    #[test]
    fn the_limit_is_inclusive() {
        assert_eq!(frames(b"1234\n", 4), [Frame::Line(b"1234".to_vec())]);
        assert_eq!(frames(b"12345\n", 4), [Frame::TooLong { len: 5 }]);
        assert_eq!(frames(b"1234\r\n", 4), [Frame::Line(b"1234".to_vec())]);
    }

    #[test]
    fn a_huge_line_is_discarded_whole() {
        // 8 MiB through a 1 KiB cap, reported with its full length.
        let mut input = vec![b'x'; 8 << 20];
        input.push(b'\n');
        assert_eq!(frames(&input, 1024), [Frame::TooLong { len: 8 << 20 }]);
    }

    /// Generated streams against a reference: the same frames whatever the
    /// chunking of the stream, at every length around the limit. The
    /// default 256 cases are quick; PROPTEST_CASES runs more.
    mod properties {
        use std::pin::Pin;
        use std::task::{Context, Poll};

        use futures::io::AsyncRead;
        use proptest::prelude::*;

        use super::super::*;
        use crate::MAX_LINE;

        /// Split on `\n` (a final newline ends the last line, it does not
        /// start an empty one); a line loses one trailing `\r`; a line
        /// still over the limit is reported with its length as received.
        fn reference(input: &[u8], limit: usize) -> Vec<Frame> {
            let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
            if lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            lines
                .into_iter()
                .map(|raw| {
                    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                    if line.len() <= limit {
                        Frame::Line(line.to_vec())
                    } else {
                        Frame::TooLong { len: raw.len() }
                    }
                })
                .collect()
        }

        /// Hands out the input in the given chunk sizes, answering "not yet"
        /// before every other chunk, as a socket does.
        struct Chunked {
            data: Vec<u8>,
            pos: usize,
            sizes: Vec<usize>,
            reads: usize,
            stalled: bool,
        }

        impl AsyncRead for Chunked {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                if !self.stalled && self.reads % 2 == 1 {
                    self.stalled = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.stalled = false;
                let size = self.sizes[self.reads % self.sizes.len()];
                self.reads += 1;
                let n = buf.len().min(size).min(self.data.len() - self.pos);
                let start = self.pos;
                buf[..n].copy_from_slice(&self.data[start..start + n]);
                self.pos += n;
                Poll::Ready(Ok(n))
            }
        }

        fn frames_chunked(input: &[u8], limit: usize, sizes: Vec<usize>) -> Vec<Frame> {
            let stream = Chunked {
                data: input.to_vec(),
                pos: 0,
                sizes,
                reads: 0,
                stalled: false,
            };
            async_std::task::block_on(async {
                let mut r = LineReader::new(stream, limit);
                let mut out = Vec::new();
                loop {
                    match r.next().await.unwrap() {
                        Frame::Eof => return out,
                        f => out.push(f),
                    }
                }
            })
        }

        /// Bytes rich in the characters framing cares about.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                3 => any::<u8>(),
                2 => Just(b'\n'),
                2 => Just(b'\r'),
                1 => Just(b'x'),
            ];
            proptest::collection::vec(byte, 0..200)
        }

        proptest! {
            #[test]
            fn any_stream_in_any_chunks_frames_like_the_reference(
                input in stream(),
                limit in 0usize..24,
                sizes in proptest::collection::vec(1usize..40, 1..8),
            ) {
                prop_assert_eq!(frames_chunked(&input, limit, sizes), reference(&input, limit));
            }

            #[test]
            fn lines_around_max_line_are_kept_or_refused_exactly(
                len in MAX_LINE - 2..=MAX_LINE + 2,
                cr in any::<bool>(),
                newline in any::<bool>(),
                chunk in prop_oneof![Just(64 << 10), 4096usize..(256 << 10)],
            ) {
                let mut input = vec![b'x'; len];
                if cr {
                    input.push(b'\r');
                }
                if newline {
                    input.push(b'\n');
                }
                input.extend_from_slice(b"{}\n");
                prop_assert_eq!(
                    frames_chunked(&input, MAX_LINE, vec![chunk]),
                    reference(&input, MAX_LINE)
                );
            }
        }
    }
}
