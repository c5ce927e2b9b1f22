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
//!   followed only when it belongs to sheepdog's own uid (someone who could
//!   write as sheepdog anyway made it, e.g. a `ln -s /dev/stdout` in the
//!   image); otherwise the open fails with a message naming the owner.
//! - A regular file with more than one hard link is refused: a log file has
//!   one name, and a second is how a link to someone else's file looks.
//! - A file meant to be replaced whole is written to a fresh temporary
//!   created with `O_EXCL` (which never follows a symlink) and renamed
//!   over the target (which replaces a link, never writes through it).
//! - Opening never blocks: a FIFO planted at the path is opened with
//!   `O_NONBLOCK` (and fails without a reader) instead of hanging the
//!   output thread.
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
    let open = |follow: bool| {
        let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        if !follow {
            flags |= libc::O_NOFOLLOW;
        }
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .custom_flags(flags)
            .open(path)
    };
    let file = match open(false) {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            trusted_link(path)?;
            open(true)?
        }
        other => other?,
    };
    let meta = file.metadata()?;
    if meta.is_file() && meta.nlink() > 1 {
        return Err(refused(format!(
            "it has {} hard links; a log file has one (another name may be \
             someone else's file)",
            meta.nlink()
        )));
    }
    blocking(&file)?;
    Ok(file)
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

/// Ok when the symlink at `path` belongs to sheepdog's own uid.
fn trusted_link(path: &Path) -> io::Result<()> {
    let owner = std::fs::symlink_metadata(path)?.uid();
    let ours = nix::unistd::geteuid().as_raw();
    if owner == ours {
        return Ok(());
    }
    Err(refused(format!(
        "it is a symlink owned by uid {owner}, not by sheepdog (uid {ours}); not \
         followed, since whoever can write that directory could point it at any \
         file"
    )))
}

/// Clear the `O_NONBLOCK` used for the open: writes to a pipe reached
/// through a trusted link wait for room, as they always did.
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
    use std::os::unix::fs::symlink;

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
    fn refuses_a_link_someone_else_made() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to give a symlink another owner");
            return;
        }
        let d = scratch("other");
        let victim = d.join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        let link = d.join("a.log");
        symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let e = append(&link, 0o640).unwrap_err();
        assert!(e.to_string().contains("symlink owned by uid 65534"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        std::fs::remove_dir_all(&d).unwrap();
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
        assert_eq!(
            append(&fifo, 0o640).unwrap_err().raw_os_error(),
            Some(libc::ENXIO)
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
