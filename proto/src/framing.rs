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
}
