//! Line framing: turns the bytes read from one pipe into lines.
//!
//! Splits on `\n`, which is removed, and so is a `\r` just before it: a
//! CRLF line end (PHP on a Windows-made script, many Java and .NET tools)
//! would otherwise leave `\r` in every JSON `msg`, log file line and
//! regex (`…$` in a filter or redaction would not match). A `\r` anywhere
//! else stays (progress bars redraw with it). A line longer than `max` bytes is cut into pieces of at most `max`
//! bytes, each but the last marked `continued`; a cut is moved back (by at
//! most 3 bytes) to a UTF-8 character boundary so a valid character is never
//! split. `finish` hands out the unfinished last line when the pipe closes.
//!
//! Invariants: at most `max` bytes of an unfinished line are held between
//! calls, or `max + 1` when the last is a `\r` that a `\n` in the next
//! read would make a line end (memory per pipe is bounded); every input byte except the line
//! ends comes out exactly once, in order; any byte sequence is accepted (decoding
//! to text happens later, lossily).

/// Splits one stream of bytes into lines.
#[derive(Debug)]
pub struct Framer {
    pending: Vec<u8>,
    max: usize,
}

impl Framer {
    /// `max` is clamped to at least 4 so a cut always makes progress.
    pub fn new(max: usize) -> Framer {
        Framer {
            pending: Vec::new(),
            max: max.max(4),
        }
    }

    /// Feed bytes; `emit(line, continued)` is called for every complete line
    /// or cut piece.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], bool)) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let line = &data[..nl];
            if self.pending.is_empty() {
                cut_into(without_cr(line), self.max, emit);
            } else {
                self.pending.extend_from_slice(line);
                let whole = std::mem::take(&mut self.pending);
                cut_into(without_cr(&whole), self.max, emit);
                // Keep the allocation for the next partial line.
                self.pending = whole;
                self.pending.clear();
            }
            data = &data[nl + 1..];
        }
        self.pending.extend_from_slice(data);
        // A line of exactly `max` bytes whose CRLF is split between reads
        // is one line, not a piece plus an empty one: its `\r` is held.
        let cr_held = |p: &[u8], max: usize| p.len() == max + 1 && p.last() == Some(&b'\r');
        while self.pending.len() > self.max && !cr_held(&self.pending, self.max) {
            let cut = boundary(&self.pending, self.max);
            emit(&self.pending[..cut], true);
            self.pending.drain(..cut);
        }
        if self.pending.is_empty() && self.pending.capacity() > self.max {
            self.pending = Vec::new();
        }
    }

    /// The pipe closed: emit the unfinished last line, if any.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            cut_into(&rest, self.max, emit);
        }
    }

    /// Bytes of an unfinished line held.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

/// `line` without the `\r` of a CRLF line end. A `\r` that ended a piece
/// already cut off stays in it: only held bytes are looked at, and the
/// last byte of a push is always held.
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn cut_into(mut line: &[u8], max: usize, emit: &mut dyn FnMut(&[u8], bool)) {
    while line.len() > max {
        let cut = boundary(line, max);
        emit(&line[..cut], true);
        line = &line[cut..];
    }
    emit(line, false);
}

/// Where to cut `bytes` (longer than `max`): at `max`, or up to 3 bytes
/// earlier so the next piece does not start inside a UTF-8 character.
fn boundary(bytes: &[u8], max: usize) -> usize {
    let is_cont = |i: usize| bytes.get(i).is_some_and(|b| b & 0xC0 == 0x80);
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| i > 0 && !is_cont(i))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        let mut emit = |l: &[u8], c: bool| out.push((String::from_utf8_lossy(l).into_owned(), c));
        for c in chunks {
            f.push(c, &mut emit);
            assert!(f.held() <= max + 1);
        }
        f.finish(&mut emit);
        out
    }

    fn l(s: &str, c: bool) -> (String, bool) {
        (s.to_string(), c)
    }

    #[test]
    fn splits_on_newlines_across_chunks_and_keeps_the_last_partial_line() {
        let out = run(64, &[b"one\ntw", b"o\n\nthr", b"ee\r\nlast"]);
        assert_eq!(
            out,
            vec![
                l("one", false),
                l("two", false),
                l("", false),
                l("three", false),
                l("last", false)
            ]
        );
    }

    #[test]
    fn a_crlf_line_end_goes_whole_and_other_carriage_returns_stay() {
        // The \r and \n in separate reads, and a line that is only CRLF.
        let out = run(64, &[b"a\r", b"\n\r\n10%\r20%\r\r\n", b"end\r"]);
        assert_eq!(
            out,
            vec![
                l("a", false),
                l("", false),
                l("10%\r20%\r", false),
                l("end\r", false)
            ]
        );
        // A cut line: the \r held with the rest of it goes too.
        assert_eq!(run(4, &[b"abc\r\n"]), vec![l("abc", false)]);
        assert_eq!(
            run(4, &[b"abcdef\r", b"\n"]),
            vec![l("abcd", true), l("ef", false)]
        );
        // A line of exactly `max` bytes, its \r and \n in separate reads:
        // one line (it was a piece and an empty line).
        assert_eq!(run(4, &[b"abcd\r", b"\n"]), vec![l("abcd", false)]);
        // That \r followed by more text is kept, in the next piece.
        assert_eq!(
            run(4, &[b"abcd\r", b"x\n"]),
            vec![l("abcd", true), l("\rx", false)]
        );
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let out = run(4, &[b"abcdefghij\nxy", b"zzzzzz"]);
        assert_eq!(
            out,
            vec![
                l("abcd", true),
                l("efgh", true),
                l("ij", false),
                l("xyzz", true),
                l("zzzz", false)
            ]
        );
        // Exactly max is one whole line.
        assert_eq!(run(4, &[b"abcd\n"]), vec![l("abcd", false)]);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        // "aé" + "é" = 61 c3 a9 c3 a9: a cut at 4 would split the second é.
        let out = run(4, &["aéé\n".as_bytes()]);
        assert_eq!(out, vec![l("aé", true), l("é", false)]);
    }

    #[test]
    fn invalid_utf8_passes_through_as_bytes() {
        let mut f = Framer::new(8);
        let mut out: Vec<Vec<u8>> = Vec::new();
        f.push(
            b"\xff\xfe\x80\x80\x80\x80\x80\x80\x80\x80\x80\n",
            &mut |l, _| out.push(l.to_vec()),
        );
        assert_eq!(
            out.concat(),
            b"\xff\xfe\x80\x80\x80\x80\x80\x80\x80\x80\x80"
        );
    }

    #[test]
    fn every_byte_comes_out_once_whatever_the_chunking() {
        // Carriage returns in the middle of lines, never before a \n.
        let input: Vec<u8> = (0..5000u32)
            .map(|i| {
                if i % 97 == 0 {
                    b'\n'
                } else if i % 13 == 0 && (i + 1) % 97 != 0 {
                    b'\r'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        for chunk in [1, 7, 64, 1000] {
            let mut f = Framer::new(16);
            let mut out = Vec::new();
            let mut emit = |l: &[u8], c: bool| {
                out.extend_from_slice(l);
                if !c {
                    out.push(b'\n');
                }
            };
            for c in input.chunks(chunk) {
                f.push(c, &mut emit);
            }
            f.finish(&mut emit);
            let mut expected = input.clone();
            if expected.last() != Some(&b'\n') {
                expected.push(b'\n');
            }
            assert_eq!(out, expected, "chunk {chunk}");
        }
    }
}
