//! Log files with size-based rotation, and file path templates.
//!
//! A `RotatingFile` appends whole lines to `path` (created with mode 0640).
//! What `path` is, read with fstat at open, decides how:
//! - A regular file is rotated by size: before a line that would take it
//!   past `max_size`, `path.{N-1}` → `path.N` (the oldest, `path.max_files`,
//!   is replaced), …, `path` → `path.1`, and a fresh `path` is opened.
//! - Anything else (a FIFO, a terminal, sheepdog's own stdout behind a
//!   trusted link to `/dev/stdout`, pipe or file) is never rotated, since
//!   renaming it would move the link away and put a regular file in its
//!   place, and never waited for: it is
//!   written without blocking. What its reader has no room for waits in the
//!   buffer (`BUF_MAX`; `waiting` gives the descriptor to poll for room),
//!   and lines beyond are dropped and counted.
//!
//! `reopen` closes and reopens `path` for external rotators (logrotate's
//! `create` mode, then SIGUSR1).
//!
//! Invariants:
//! - Lines are never split: rotation happens only between lines, and a line
//!   longer than `max_size` goes whole into a fresh file. Nothing is lost or
//!   duplicated across a rotation: the buffer is written before the rename,
//!   and the line that triggered it goes to the new file. A write that a
//!   pipe took only in part leaves the rest of the line first in the
//!   buffer; lines are dropped only whole, and the part of a line that a
//!   full disk took is cut off the file again.
//! - A rotation happens only when the file really is that large (the count
//!   of bytes written is checked against fstat when it says so: an external
//!   `copytruncate` empties the file), and only while `path` still names the
//!   file being written (dev/inode). A file moved away or deleted without a
//!   SIGUSR1 is not rotated, which would shift the rotated files once per
//!   line: `path` is opened anew and they stay as they are. A failed
//!   rotation is tried again after another `max_size` bytes.
//! - Failures are logged once per streak (a write: until one works again,
//!   then how many lines were lost; a rotation, or a file found moved or
//!   deleted: until a rotation works), by the file itself
//!   (`logging::file_trouble`). sheepdog's own log file says them on stdout
//!   only: it is written by its writer thread, under its lock.
//! - Writes are buffered per output-thread round (`push_line` then
//!   `flush`); the buffer is bounded (`BUF_MAX`, flushed early beyond it).
//! - The file is opened by `safe_open::append`: a symlink or hard link that
//!   a child planted in the log directory, or a symlink in place of one of
//!   its parents, is refused, not written through. Rotation renames inside
//!   the directory that the same walk reaches (`safe_open::Dir`), never
//!   through the path, and only when the file written is found there.
//! - A missing directory is a clear error at open ("directory … does not
//!   exist"), never a panic; a failing rename keeps writing to the current
//!   file (it grows past `max_size` rather than lose lines).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::config::LogLevel;
use crate::logging::{loss_note, Record, SELF};

/// Flush the write buffer early beyond this many bytes; as much may wait
/// for a reader that does not keep up.
const BUF_MAX: usize = 64 * 1024;

/// `{process}` and `{instance}` in a `logging.file.path`.
pub fn expand(template: &Path, process: &str, instance: &str) -> PathBuf {
    let s = template.to_string_lossy();
    if !s.contains('{') {
        return template.to_path_buf();
    }
    PathBuf::from(
        s.replace("{process}", process)
            .replace("{instance}", instance),
    )
}

/// Check that the directory of `path` exists, and that no link on the
/// way is one `safe_open::append` will refuse to follow.
pub fn check_dir(path: &Path) -> Result<(), String> {
    check_dir_to(path, "open log file")?;
    crate::safe_open::check(path)
        .map_err(|e| format!("unable to open log file {}: {e}", path.display()))
}

/// `check_dir` for another use of `path` (`doing`: "listen on").
pub fn check_dir_to(path: &Path, doing: &str) -> Result<(), String> {
    let dir = crate::safe_open::dir_of(path);
    let shown = path.display();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "unable to {doing} {shown}: {} is not a directory",
                dir.display()
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "unable to {doing} {shown}: directory {} does not exist (create it first)",
                dir.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "unable to {doing} {shown}: directory {}: {e}",
                dir.display()
            ))
        }
    }
    not_a_directory(path, doing)
}

/// Opening or renaming onto a directory fails at every attempt: refuse it
/// up front. `doing`: "open log file", for the message.
pub fn not_a_directory(path: &Path, doing: &str) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(format!(
            "unable to {doing} {}: it is a directory; expected the path of a file",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// The file, its size, and whether it is a regular file of its own (not
/// sheepdog's stdout or stderr, reached through `/dev/stdout`).
fn open_append(path: &Path) -> Result<(File, u64, bool), String> {
    // Not `check_dir`: `append` walks the links itself, with the same rule.
    check_dir_to(path, "open log file")?;
    let file = crate::safe_open::append(path, 0o640)
        .map_err(|e| format!("unable to open log file {}: {e}", path.display()))?;
    let meta = file.metadata();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let own = meta.is_ok_and(|m| m.is_file()) && !crate::safe_open::is_own_std(&file);
    Ok((file, size, own))
}

/// An append-only log file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Rotated, and written with blocking writes; otherwise never rotated
    /// nor waited for.
    regular: bool,
    /// Bytes in the file plus bytes buffered.
    size: u64,
    max_size: u64,
    max_files: u32,
    buf: Vec<u8>,
    /// The last flush left lines for a reader that had no room.
    stalled: bool,
    /// Lines lost in the current streak of write failures.
    lost: u64,
    rotate_failing: bool,
    /// sheepdog's own log file (`global.log_file`): its troubles go to
    /// stdout only.
    own: bool,
    /// What was reported, for the tests.
    #[cfg(test)]
    reports: Vec<String>,
}

impl RotatingFile {
    /// `own`: sheepdog's own log file (`global.log_file`).
    pub fn open(
        path: &Path,
        max_size: u64,
        max_files: u32,
        own: bool,
    ) -> Result<RotatingFile, String> {
        let (file, size, regular) = open_append(path)?;
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            regular,
            size,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            buf: Vec::new(),
            stalled: false,
            lost: 0,
            rotate_failing: false,
            own,
            #[cfg(test)]
            reports: Vec::new(),
        })
    }

    /// Queue one whole line (with its newline), rotating first if it would
    /// take a regular file past `max_size`.
    pub fn push_line(&mut self, line: &[u8]) {
        let len = line.len() as u64;
        if self.regular && self.size + len > self.max_size {
            self.flush();
            self.rotate_if_full(len);
        }
        if self.buf.len() + line.len() > BUF_MAX {
            // A reader may have room again, or leave the lines here.
            self.flush();
            if self.stalled {
                return self.lose(1, &"its reader does not keep up");
            }
        }
        self.buf.extend_from_slice(line);
        self.size += len;
    }

    /// One line, written at once.
    #[cfg(test)]
    pub fn write_line(&mut self, line: &[u8]) {
        self.push_line(line);
        self.flush();
    }

    /// Write what is buffered, as far as a reader that is not a disk has
    /// room for.
    pub fn flush(&mut self) {
        let mut done = 0;
        let failure = loop {
            if done == self.buf.len() {
                break None;
            }
            // A disk takes it, or fails (full or gone). O_NONBLOCK is kept
            // on what is not a regular file: this never sleeps, so no signal
            // can interrupt it (EINTR).
            match (&self.file).write(&self.buf[done..]) {
                Ok(0) => break Some(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) => break Some(e),
            }
        };
        if failure.is_some() && self.regular {
            // A full disk took part of a line: take it back, or the first
            // line written once there is room would be glued to its head.
            let whole = self.buf[..done]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let back = (whole as i64 - done as i64) as libc::off_t;
            if let Ok(end) = nix::unistd::lseek(&self.file, back, nix::unistd::Whence::SeekEnd) {
                let _ = nix::unistd::ftruncate(&self.file, end);
            }
            done = whole;
        }
        self.stalled = matches!(&failure, Some(e) if e.kind() == io::ErrorKind::WouldBlock);
        if self.stalled {
            // The rest (a line's tail first) waits for room.
            self.buf.drain(..done);
            return;
        }
        let lines = crate::stdout::count_lines(&self.buf[done..]);
        // On failure the rest is dropped (the disk is full or gone; holding
        // it would grow memory without bound).
        self.buf.clear();
        if let Some(e) = failure {
            self.lose(lines, &e);
        } else if self.lost > 0 && done > 0 {
            self.report(loss_note(&self.path.display(), None, self.lost));
            self.lost = 0;
        }
    }

    fn lose(&mut self, lines: u64, why: &dyn std::fmt::Display) {
        if self.lost == 0 {
            self.report(loss_note(&self.path.display(), Some(why), 0));
        }
        self.lost += lines;
    }

    /// Log a failure (the callers make it once per streak).
    fn report(&mut self, r: Record) {
        #[cfg(test)]
        self.reports.push(r.msg.clone());
        crate::logging::file_trouble(r, self.own);
    }

    /// The descriptor to poll for room while lines wait for it.
    pub fn waiting(&self) -> Option<BorrowedFd<'_>> {
        self.stalled.then(|| self.file.as_fd())
    }

    #[cfg(test)]
    fn rotated(&self, n: u32) -> PathBuf {
        numbered(self.path.as_os_str(), n).into()
    }

    /// The count says that `next` more bytes pass `max_size`: rotate if the
    /// file really is that large, and still is `path`.
    fn rotate_if_full(&mut self, next: u64) {
        let Ok(real) = self.file.metadata() else {
            return;
        };
        if real.len() == 0 || real.len() + next <= self.max_size {
            // Truncated behind our back (copytruncate): count from there.
            self.size = real.len();
            return;
        }
        let at_path = crate::safe_open::locate(&self.path)
            .ok()
            .filter(|(dir, name)| dir.holds(name, &real));
        let result = if let Some((dir, name)) = at_path {
            match shift(&dir, name, self.max_files) {
                Ok(()) => self.reopen(),
                Err(e) => Err(format!("unable to rotate {}: {e}", self.path.display())),
            }
        } else {
            // Moved away or deleted without a SIGUSR1: not ours to rotate.
            // Said (once) like a failed rotation, whether or not the new
            // file opens.
            let reopened = self.reopen();
            reopened.and(Err(format!(
                "{} was moved or deleted without a SIGUSR1; started a new one",
                self.path.display()
            )))
        };
        match result {
            Ok(()) => self.rotate_failing = false,
            Err(e) => {
                // Its directory is gone too (removed at run time): the file
                // is in none, so nobody can read it, and left to grow it
                // would fill the disk unseen. Emptied, it stays in bounds.
                if std::os::unix::fs::MetadataExt::nlink(&real) == 0 {
                    let _ = nix::unistd::ftruncate(&self.file, 0);
                }
                // Tried again after another max_size bytes, not every line.
                self.size = 0;
                if !std::mem::replace(&mut self.rotate_failing, true) {
                    self.report(Record::new(LogLevel::Error, SELF.into(), e));
                }
            }
        }
    }

    /// Close and reopen `path` (it may have been moved away).
    pub fn reopen(&mut self) -> Result<(), String> {
        self.flush();
        let (file, size, regular) = open_append(&self.path)?;
        self.file = file;
        self.size = size + self.buf.len() as u64;
        self.regular = regular;
        self.stalled = false;
        Ok(())
    }
}

/// Rotate: `name.{N-1}` → `name.N`, …, `name` → `name.1`, all in `dir`
/// (verified, and where the file being written is).
fn shift(dir: &crate::safe_open::Dir, name: &OsStr, max_files: u32) -> io::Result<()> {
    (1..max_files).rev().try_for_each(|n| {
        match dir.rename(&numbered(name, n), &numbered(name, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    })?;
    dir.rename(name, &numbered(name, 1))
}

/// `name.n`, a rotated file's name.
fn numbered(name: &OsStr, n: u32) -> OsString {
    let mut s = name.to_owned();
    s.push(format!(".{n}"));
    s
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sheepdog-sink-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn templates() {
        let p = expand(
            Path::new("/var/log/{process}/{instance}.log"),
            "web",
            "web-2",
        );
        assert_eq!(p, PathBuf::from("/var/log/web/web-2.log"));
        assert_eq!(
            expand(Path::new("/x.log"), "a", "a-1"),
            PathBuf::from("/x.log")
        );
    }

    #[test]
    fn rotates_by_size_without_losing_or_splitting_lines() {
        let d = tmp("rotate");
        let path = d.join("app.log");
        let mut f = RotatingFile::open(&path, 100, 3, false).unwrap();
        for i in 0..50 {
            f.push_line(format!("line {i:04} xxxxxxxxxx\n").as_bytes());
            if i % 7 == 0 {
                f.flush();
            }
        }
        f.flush();
        assert!(f.reports.is_empty());
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        // Every file holds whole lines and is within max_size.
        for p in [path.clone(), f.rotated(1), f.rotated(2), f.rotated(3)] {
            let s = read(p.clone());
            assert!(s.len() <= 100, "{p:?} is {} bytes", s.len());
            assert!(s.is_empty() || s.ends_with('\n'));
        }
        assert!(!f.rotated(4).exists(), "max_files rotated files are kept");
        // The newest lines are all there, in order, once each.
        let all: Vec<String> = [f.rotated(3), f.rotated(2), f.rotated(1), path.clone()]
            .into_iter()
            .flat_map(|p| read(p).lines().map(str::to_string).collect::<Vec<_>>())
            .collect();
        let nums: Vec<u32> = all.iter().map(|l| l[5..9].parse().unwrap()).collect();
        let first = nums[0];
        assert_eq!(nums, (first..50).collect::<Vec<_>>());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_file_whose_directory_was_removed_stays_within_max_size() {
        let d = tmp("gone");
        let dir = d.join("logs");
        std::fs::create_dir(&dir).unwrap();
        let mut f = RotatingFile::open(&dir.join("app.log"), 100, 2, false).unwrap();
        f.write_line(b"before\n");
        std::fs::remove_dir_all(&dir).unwrap();
        for i in 0..200 {
            f.write_line(format!("line {i:04} xxxxxxxxxx\n").as_bytes());
        }
        // Said once; the unlinked file grew no further than a rotation's
        // worth (it had reached 4 KiB on the old code).
        assert_eq!(f.reports.len(), 1, "{:?}", f.reports);
        let size = f.file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        assert!(size <= 100, "{size} bytes");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_missing_directory_is_a_clear_error_and_reopen_follows_a_move() {
        let d = tmp("reopen");
        let e = RotatingFile::open(&d.join("nope/app.log"), 1000, 1, false).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let path = d.join("app.log");
        let mut f = RotatingFile::open(&path, 1 << 20, 1, false).unwrap();
        f.write_line(b"before\n");
        std::fs::rename(&path, d.join("app.log.moved")).unwrap();
        f.write_line(b"still to the moved file\n");
        f.reopen().unwrap();
        f.write_line(b"after\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(
            std::fs::read_to_string(d.join("app.log.moved")).unwrap(),
            "before\nstill to the moved file\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        std::fs::remove_dir_all(d).unwrap();
    }

    fn lines(n: std::ops::Range<u32>) -> impl Iterator<Item = Vec<u8>> {
        n.map(|i| format!("line {i:04} xxxxxxxxxx\n").into_bytes())
    }

    #[test]
    fn a_file_truncated_behind_its_back_is_not_rotated_early() {
        let d = tmp("truncated");
        let path = d.join("app.log");
        let mut f = RotatingFile::open(&path, 200, 3, false).unwrap();
        // 21 bytes a line: 189 bytes, then copytruncate.
        lines(0..9).for_each(|l| f.write_line(&l));
        std::fs::copy(&path, f.rotated(1)).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        lines(9..18).for_each(|l| f.write_line(&l));
        assert!(!f.rotated(2).exists(), "rotated early");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 9);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_deleted_file_is_started_anew_and_the_rotated_ones_are_left_alone() {
        let d = tmp("deleted");
        let path = d.join("app.log");
        let mut f = RotatingFile::open(&path, 100, 3, false).unwrap();
        lines(0..20).for_each(|l| f.write_line(&l));
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let before: Vec<String> = (1..=3).map(|n| read(f.rotated(n))).collect();
        assert!(!before[2].is_empty());
        std::fs::remove_file(&path).unwrap();
        // 21 bytes a line, 4 a file: line 20 finds the file gone, and starts
        // a new one with 20..24.
        lines(20..24).for_each(|l| f.write_line(&l));
        let after: Vec<String> = (1..=3).map(|n| read(f.rotated(n))).collect();
        assert_eq!(before, after, "the rotated files were shifted");
        let new = read(path.clone());
        assert!(new.starts_with("line 0020 ") && new.ends_with("line 0023 xxxxxxxxxx\n"));
        let reports = std::mem::take(&mut f.reports);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(reports[0].contains("was moved or deleted"), "{reports:?}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_fifo_is_never_rotated_nor_waited_for_and_says_what_it_lost() {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let d = tmp("fifo");
        let path = d.join("app.log");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut reader = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut f = RotatingFile::open(&path, 1024, 2, false).unwrap();
        // Far more than the pipe and the buffer hold: nothing blocks.
        lines(0..20_000).for_each(|l| f.write_line(&l));
        assert!(f.waiting().is_some());
        assert!(!f.rotated(1).exists(), "a FIFO was rotated");
        let reports = std::mem::take(&mut f.reports);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(reports[0].contains("does not keep up"), "{reports:?}");
        let mut got = Vec::new();
        let mut buf = vec![0; 1 << 16];
        let mut drain = |got: &mut Vec<u8>| {
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        };
        drain(&mut got);
        f.write_line(b"line 9999 last\n");
        for _ in 0..10 {
            drain(&mut got);
            if f.waiting().is_none() {
                break;
            }
            f.flush();
        }
        assert!(f.waiting().is_none());
        let text = String::from_utf8(got).unwrap();
        // Whole lines, in order, the first ones and the last.
        let nums: Vec<u32> = text.lines().map(|l| l[5..9].parse().unwrap()).collect();
        assert_eq!(nums[0], 0);
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "out of order");
        assert_eq!(nums.last(), Some(&9999));
        let reports = std::mem::take(&mut f.reports);
        let lost = 20_000 - (nums.len() as u64 - 1);
        assert_eq!(
            reports,
            [format!(
                "{} works again; {lost} lines were lost",
                path.display()
            )]
        );
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(d).unwrap();
    }
}
