//! Log files with size-based rotation, and file path templates.
//!
//! A `RotatingFile` appends whole lines to `path` (created with mode 0640).
//! Before a line that would take the file past `max_size`, the file is
//! rotated: `path.{N-1}` → `path.N` (the oldest, `path.max_files`, is
//! replaced), …, `path` → `path.1`, and a fresh `path` is opened. `reopen`
//! closes and reopens `path` for external rotators (logrotate's `create`
//! mode, then SIGUSR1).
//!
//! Invariants:
//! - Lines are never split: rotation happens only between lines, and a line
//!   longer than `max_size` goes whole into a fresh file. Nothing is lost or
//!   duplicated across a rotation: the buffer is written before the rename,
//!   and the line that triggered it goes to the new file.
//! - Writes are buffered per output-thread round (`push_line` then
//!   `flush`); the buffer is bounded (`BUF_MAX`, flushed early beyond it).
//! - The file is opened by `safe_open::append`: a symlink or hard link that
//!   a child planted in the log directory is refused, not written through.
//! - A missing directory is a clear error at open ("directory … does not
//!   exist"), never a panic; a failing rename keeps writing to the current
//!   file (it grows past `max_size` rather than lose lines).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Flush the write buffer early beyond this many bytes.
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

/// Check that the directory of `path` exists.
pub fn check_dir(path: &Path) -> Result<(), String> {
    check_dir_to(path, "open log file")
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

fn open_append(path: &Path) -> Result<(File, u64), String> {
    check_dir(path)?;
    let file = crate::safe_open::append(path, 0o640)
        .map_err(|e| format!("unable to open log file {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

/// An append-only log file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file plus bytes buffered.
    size: u64,
    max_size: u64,
    max_files: u32,
    buf: Vec<u8>,
    failing: bool,
}

impl RotatingFile {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<RotatingFile, String> {
        let (file, size) = open_append(path)?;
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            buf: Vec::new(),
            failing: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue one whole line (with its newline), rotating first if it would
    /// take the file past `max_size`.
    pub fn push_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut result = Ok(());
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            // A failed rotation still keeps the line (in the current file).
            result = self.flush().and_then(|()| self.rotate());
        }
        self.buf.extend_from_slice(line);
        self.size += line.len() as u64;
        if self.buf.len() >= BUF_MAX {
            let r = self.flush();
            result = result.and(r);
        }
        result
    }

    /// One line, written at once.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.push_line(line)?;
        self.flush()
    }

    /// Write what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        // On failure the buffered lines are dropped (the disk is full or
        // gone); holding them would grow memory without bound.
        self.buf.clear();
        if r.is_ok() {
            self.failing = false;
        }
        r
    }

    /// Record a write failure; true if it is the first of a streak (worth
    /// reporting once).
    pub fn note_failure(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.max_files).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        let (file, size) = open_append(&self.path).map_err(io::Error::other)?;
        self.file = file;
        self.size = size;
        Ok(())
    }

    /// Close and reopen `path` (it may have been moved away).
    pub fn reopen(&mut self) -> Result<(), String> {
        let _ = self.flush();
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        let _ = self.flush();
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
        let mut f = RotatingFile::open(&path, 100, 3).unwrap();
        for i in 0..50 {
            f.push_line(format!("line {i:04} xxxxxxxxxx\n").as_bytes())
                .unwrap();
            if i % 7 == 0 {
                f.flush().unwrap();
            }
        }
        f.flush().unwrap();
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
    fn a_missing_directory_is_a_clear_error_and_reopen_follows_a_move() {
        let d = tmp("reopen");
        let e = RotatingFile::open(&d.join("nope/app.log"), 1000, 1).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let path = d.join("app.log");
        let mut f = RotatingFile::open(&path, 1 << 20, 1).unwrap();
        f.write_line(b"before\n").unwrap();
        std::fs::rename(&path, d.join("app.log.moved")).unwrap();
        f.write_line(b"still to the moved file\n").unwrap();
        f.reopen().unwrap();
        f.write_line(b"after\n").unwrap();
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
}
