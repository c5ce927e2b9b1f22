//! Opening files in directories that a less privileged child may write.
//!
//! sheepdog usually runs as root while its children drop to `user:`. A log
//! directory such as Laravel's `storage/logs` belongs to that user, who can
//! replace sheepdog's log file (or the readiness file's temporary) with a
//! symlink or a hard link to any file, and have root append to or overwrite
//! it. The rules here close that, in the manner of the kernel's
//! `protected_symlinks`/`protected_hardlinks`, but without depending on how
//! the host set those:
//!
//! - The last path component is opened with `O_NOFOLLOW`. A symlink there is
//!   followed only out of a directory no one but root or sheepdog's uid can
//!   write (`/dev/stdout`, an image's `ln -s /dev/stdout /var/log/app.log`),
//!   where nobody else can have made it or swap it between check and open;
//!   its target is opened under the same rules, one hop at a time.
//!   Otherwise the open fails with a message naming the directory.
//! - A regular file with more than one hard link is refused: a log file has
//!   one name, and a second is how a link to someone else's file looks.
//! - A file meant to be replaced whole is written to a fresh temporary
//!   created with `O_EXCL` (which never follows a symlink) and renamed
//!   over the target (which replaces a link, never writes through it).
//! - Opening never blocks: a FIFO planted at the path is opened with
//!   `O_NONBLOCK` (and fails without a reader) instead of hanging the
//!   output thread. Nor does writing: `O_NONBLOCK` stays on anything but a
//!   regular file (a FIFO, a terminal, `/dev/stdout`'s pipe), whose reader
//!   may stall; the writer decides what to do with what does not fit.
//!
//! Directories above the last component are trusted: they come from the
//! configuration, and a child that can replace one of them can only choose
//! where a file of sheepdog's chosen name is created.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Open `path` for appending, creating it with `mode`, under the rules
/// above. The error says which rule refused it.
pub fn append(path: &Path, mode: u32) -> io::Result<File> {
    let file = follow_trusted(path, mode, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ENXIO) => io::Error::new(
            e.kind(),
            format!("it is a FIFO that nobody reads yet ({e}); start its reader first"),
        ),
        _ => e,
    })?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.nlink() > 1 {
        return Err(refused(format!(
            "it has {} hard links; a log file has one (another name may be \
             someone else's file)",
            meta.nlink()
        )));
    }
    if meta.is_file() {
        blocking(&file)?;
    }
    Ok(file)
}

/// Links followed at most, as the kernel's own limit is 40.
const MAX_HOPS: u32 = 8;

/// Open `path` with `O_NOFOLLOW`; a symlink there is followed one hop at a
/// time, each under the same rule, and only out of a directory that no one
/// but root or sheepdog can write (`trusted_dir`): there nobody else can
/// swap the link between our check and our open. `/proc` targets (what
/// `/dev/stdout` points at: our own descriptors) are opened as they are.
fn follow_trusted(path: &Path, mode: u32, hops: u32) -> io::Result<File> {
    let open = |p: &Path, follow: bool| {
        let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        if !follow {
            flags |= libc::O_NOFOLLOW;
        }
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .custom_flags(flags)
            .open(p)
    };
    match open(path, false) {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let dir = trusted_dir(path)?;
            if hops >= MAX_HOPS {
                return Err(e);
            }
            let target = dir.join(std::fs::read_link(path)?);
            if target.starts_with("/proc") {
                return open(path, true);
            }
            follow_trusted(&target, mode, hops + 1)
        }
        other => other,
    }
}

/// The directory of the symlink at `path`, when only root or sheepdog's
/// own uid can write it.
fn trusted_dir(path: &Path) -> io::Result<&Path> {
    let dir = dir_of(path);
    let meta = std::fs::metadata(dir)?;
    let ours = nix::unistd::geteuid().as_raw();
    if (meta.uid() == 0 || meta.uid() == ours) && meta.mode() & 0o022 == 0 {
        return Ok(dir);
    }
    Err(refused(format!(
        "it is a symlink in {}, which others than root and sheepdog may write (owner uid {}, \
         mode {:o}); not followed, since they could point it at any file",
        dir.display(),
        meta.uid(),
        meta.mode() & 0o7777
    )))
}

/// Replace `path` with `content`, so that readers see the old file or the
/// whole new one, and nothing is written through a planted link.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(tmp)?;
    file.write_all(content)?;
    drop(file);
    std::fs::rename(tmp, path)
}

/// The directory `path` is in (`.` for a bare file name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Clear the `O_NONBLOCK` used for the open, on a regular file: a disk
/// that is slow slows the writer, whatever the file system makes of it.
fn blocking(file: &File) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("sheepdog-safe-open-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn appends_to_plain_files_and_own_links() {
        let d = scratch("plain");
        let log = d.join("a.log");
        append(&log, 0o640).unwrap().write_all(b"one\n").unwrap();
        append(&log, 0o640).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
        // A link made by our own uid is followed.
        let link = d.join("b.log");
        symlink(&log, &link).unwrap();
        append(&link, 0o640).unwrap().write_all(b"three\n").unwrap();
        assert!(std::fs::read_to_string(&log).unwrap().ends_with("three\n"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_a_link_in_a_directory_others_can_write() {
        let d = scratch("other");
        let victim = d.join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        let logs = d.join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = logs.join("a.log");
        symlink(&victim, &link).unwrap();
        let e = append(&link, 0o640).unwrap_err();
        assert!(
            e.to_string()
                .contains("which others than root and sheepdog may write"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        // A trusted link to a link in that directory: refused at that hop.
        let hop = d.join("b.log");
        symlink(&link, &hop).unwrap();
        assert!(append(&hop, 0o640).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dev_stdout_is_followed() {
        // /dev is root's and 0755; /dev/stdout points into /proc.
        assert!(append(Path::new("/dev/stdout"), 0o640).is_ok());
    }

    #[test]
    fn refuses_a_second_hard_link() {
        let d = scratch("hard");
        let victim = d.join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        std::fs::hard_link(&victim, d.join("a.log")).unwrap();
        let e = append(&d.join("a.log"), 0o640).unwrap_err();
        assert!(e.to_string().contains("2 hard links"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_fifo_without_reader_fails_instead_of_blocking() {
        let d = scratch("fifo");
        let fifo = d.join("a.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = append(&fifo, 0o640).unwrap_err();
        assert!(
            e.to_string().contains("a FIFO that nobody reads yet"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn atomic_writes_replace_a_planted_link_instead_of_following_it() {
        let d = scratch("atomic");
        let victim = d.join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        let target = d.join("ready");
        symlink(&victim, d.join("ready.tmp")).unwrap();
        symlink(&victim, &target).unwrap();
        write_atomically(&target, b"ready\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "ready\n");
        assert!(!std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
