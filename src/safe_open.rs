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
//! - The path is resolved one component at a time, from a directory held
//!   open (`openat` with `O_NOFOLLOW`, `O_PATH` for directories). A symlink
//!   at any component, the last included, is followed only out of a
//!   directory no one but root or sheepdog's uid can write (`/dev/stdout`,
//!   an image's `/var/log -> /data/log`), where nobody else can have made
//!   it or swap it between check and open; its target is resolved under the
//!   same rules, at most `MAX_HOPS` links in all. Otherwise the open fails
//!   with a message naming the directory. A child that owns `storage/` so
//!   cannot turn `storage/logs` into a link to another directory.
//! - Whatever acts on a name (open, create, rename, remove) does it relative
//!   to the directory verified so (`Dir`), never through the path again:
//!   rotation and the readiness file cannot be sent elsewhere by a
//!   directory swapped after the check.
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

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, readlinkat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;

/// Open `path` for appending, creating it with `mode`, under the rules
/// above. The error says which rule refused it.
pub fn append(path: &Path, mode: u32) -> io::Result<File> {
    let file = open_in(Dir::cwd()?, path, mode, &mut 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ENXIO) => io::Error::new(
            e.kind(),
            format!("it is a FIFO that nobody reads yet ({e}); start its reader first"),
        ),
        _ => e,
    })?;
    let meta = file.metadata()?;
    if meta.is_file() {
        one_link(meta.nlink())?;
        blocking(&file)?;
    }
    Ok(file)
}

/// Links followed at most, as the kernel's own limit is 40.
const MAX_HOPS: u32 = 8;

/// Open `path`, from `dir`, with `O_NOFOLLOW`; a symlink there is followed
/// one hop at a time, each under the same rule (`Dir::link`). `/proc`
/// targets (what `/dev/stdout` points at: our own descriptors) are opened
/// as they are.
fn open_in(dir: Dir, path: &Path, mode: u32, hops: &mut u32) -> io::Result<File> {
    let (dir, name) = dir.locate(path, hops)?;
    let name = &*c(name)?;
    let open = |follow: bool| {
        let mut flags = OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC;
        if !follow {
            flags |= OFlag::O_NOFOLLOW;
        }
        openat(dir.fd(), name, flags, Mode::from_bits_truncate(mode)).map(File::from)
    };
    match open(false) {
        // A link in /proc (`/proc/1/fd/1`) is the kernel's to follow: its
        // text (`pipe:[123]`) names no file.
        Err(nix::errno::Errno::ELOOP) if dir.in_proc() => Ok(shared_std(open(true)?)),
        Err(nix::errno::Errno::ELOOP) => {
            let target = dir.link(name, hops, nix::errno::Errno::ELOOP.into())?;
            if target.starts_with("/proc") {
                return Ok(shared_std(open(true)?));
            }
            open_in(dir, &target, mode, hops)
        }
        other => Ok(other?),
    }
}

/// `file`, or sheepdog's own stdout or stderr when `file` is the same
/// regular file (`/dev/stdout`, `/proc/1/fd/1` with `sheepdog > out.log`):
/// a second open has an offset of its own, and sheepdog's own lines would
/// overwrite the ones written through it. (A pipe or terminal stays opened
/// anew: it has no offset, and keeps its own O_NONBLOCK.)
fn shared_std(file: File) -> File {
    let (out, err) = (io::stdout(), io::stderr());
    let same = [out.as_fd(), err.as_fd()]
        .into_iter()
        .find(|fd| same_regular(&file, *fd));
    match same.map(|fd| fd.try_clone_to_owned()) {
        Some(Ok(fd)) => File::from(fd),
        _ => file,
    }
}

/// Whether `file` is sheepdog's own stdout or stderr, a regular file: not
/// a log file's to rotate (that would rename `/dev/stdout` away).
pub fn is_own_std(file: &File) -> bool {
    same_regular(file, io::stdout().as_fd()) || same_regular(file, io::stderr().as_fd())
}

fn same_regular(file: &File, fd: BorrowedFd) -> bool {
    match (nix::sys::stat::fstat(file), nix::sys::stat::fstat(fd)) {
        (Ok(a), Ok(b)) => {
            a.st_mode & libc::S_IFMT == libc::S_IFREG
                && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        }
        _ => false,
    }
}

/// Whether a file or directory of owner `uid` and `mode` may be changed by
/// others than root and sheepdog's uid: it is theirs, or group- or
/// world-writable. The one trust rule for what sheepdog writes through
/// (here) and what it runs (`config::perms`).
pub fn others_may_change(uid: u32, mode: u32) -> bool {
    let ours = nix::unistd::geteuid().as_raw();
    (uid != 0 && uid != ours) || mode & 0o022 != 0
}

/// The directory `path` is in, reached one component at a time from the
/// working directory (`Dir::descend`), and the name in it.
pub fn locate(path: &Path) -> io::Result<(Dir, &OsStr)> {
    Dir::cwd()?.locate(path, &mut 0)
}

/// A regular file's `nlink` is 1: a second name is how a link to someone
/// else's file looks.
fn one_link(nlink: u64) -> io::Result<()> {
    match nlink {
        0 | 1 => Ok(()),
        n => Err(refused(format!(
            "it has {n} hard links; a log file has one (another name may be \
             someone else's file)"
        ))),
    }
}

/// What `append` would refuse `path` for, without creating or opening
/// anything: a symlink, at any component, out of a directory others may
/// change, or a regular file with a second name. So a log file placed so
/// is refused before anything starts (`output::check_files`), not when its
/// first line comes. A path that does not exist (yet) is no problem here.
pub fn check(path: &Path) -> io::Result<()> {
    check_in(Dir::cwd()?, path, &mut 0)
}

// (`nlink_t` is narrower than u64 on some targets.)
#[allow(clippy::useless_conversion)]
fn check_in(dir: Dir, path: &Path, hops: &mut u32) -> io::Result<()> {
    let (dir, name) = match dir.locate(path, hops) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let name = &*c(name)?;
    if dir.in_proc() {
        return Ok(());
    }
    if readlinkat(dir.fd(), name).is_err() {
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        return match nix::sys::stat::fstatat(dir.fd(), name, flags) {
            Ok(m) if m.st_mode & libc::S_IFMT == libc::S_IFREG => one_link(u64::from(m.st_nlink)),
            _ => Ok(()),
        };
    }
    let target = dir.link(name, hops, io::ErrorKind::NotFound.into())?;
    if target.starts_with("/proc") {
        return Ok(());
    }
    check_in(dir, &target, hops)
}

/// Remove `path`, through its verified directory.
pub fn remove(path: &Path) -> io::Result<()> {
    let (dir, name) = locate(path)?;
    dir.remove(name)
}

/// A directory held open (`O_PATH`), reached without following a symlink
/// out of a directory that others than root or sheepdog may write.
pub struct Dir {
    fd: OwnedFd,
    /// Its path, for messages.
    shown: PathBuf,
}

impl Dir {
    fn cwd() -> io::Result<Dir> {
        Dir::at(AT_FDCWD, c".", ".".into())
    }

    fn at(from: BorrowedFd, name: &CStr, shown: PathBuf) -> io::Result<Dir> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(from, name, flags, Mode::empty())?;
        Ok(Dir { fd, shown })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether this directory is in procfs, whose links are magic.
    fn in_proc(&self) -> bool {
        nix::sys::statfs::fstatfs(self.fd())
            .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    }

    /// The directory of `path` (from here) and the name in it.
    fn locate<'p>(self, path: &'p Path, hops: &mut u32) -> io::Result<(Dir, &'p OsStr)> {
        match (path.parent(), path.file_name()) {
            (Some(up), Some(name)) => Ok((self.descend(up, hops, &mut None)?, name)),
            _ => Ok((self.descend(path, hops, &mut None)?, OsStr::new("."))),
        }
    }

    /// Walk the directories of `path` from here. `..` is the real parent
    /// of the directory reached, as the kernel takes it, and is taken only
    /// when no directory above is one that others may change (`above`
    /// names the first): they could move the one below it meanwhile, and
    /// `..` would lead where they moved it.
    fn descend(
        mut self,
        path: &Path,
        hops: &mut u32,
        above: &mut Option<String>,
    ) -> io::Result<Dir> {
        for part in path.components() {
            self = match part {
                Component::RootDir => {
                    *above = None;
                    Dir::at(AT_FDCWD, c"/", "/".into())?
                }
                Component::ParentDir => {
                    if let Some(why) = above {
                        return Err(refused(format!(
                            "a `..` below {why}; not followed, since they could move what is \
                             below it"
                        )));
                    }
                    Dir::at(self.fd(), c"..", self.shown.join(".."))?
                }
                Component::Normal(name) => {
                    let name = &*c(name)?;
                    let loose = self.loose();
                    let next = match Dir::at(self.fd(), name, self.shown.join(shown(name))) {
                        Ok(dir) => dir,
                        Err(e) => {
                            let target = self.link(name, hops, e)?;
                            self.descend(&target, hops, above)?
                        }
                    };
                    *above = above.take().or(loose);
                    next
                }
                _ => self,
            };
        }
        Ok(self)
    }

    /// "<this directory>, which others … may write (owner …)" when others
    /// than root and sheepdog's uid may change it.
    fn loose(&self) -> Option<String> {
        let meta = nix::sys::stat::fstat(self.fd()).ok()?;
        others_may_change(meta.st_uid, meta.st_mode).then(|| {
            format!(
                "{}, which others than root and sheepdog may write (owner uid {}, mode {:o})",
                self.shown.display(),
                meta.st_uid,
                meta.st_mode & 0o7777
            )
        })
    }

    /// The target of the symlink `name` here, followed only when no one but
    /// root or sheepdog's uid can write this directory: then nobody else
    /// can have made it, or swap it between this check and the next open.
    /// `other`: the error to give when `name` is not a symlink.
    fn link(&self, name: &CStr, hops: &mut u32, other: io::Error) -> io::Result<PathBuf> {
        let Ok(target) = readlinkat(self.fd(), name) else {
            return Err(other);
        };
        if let Some(why) = self.loose() {
            return Err(refused(format!(
                "{} is a symlink in {why}; not followed, since they could point it at any file",
                shown(name).display(),
            )));
        }
        *hops += 1;
        if *hops > MAX_HOPS {
            return Err(nix::errno::Errno::ELOOP.into());
        }
        Ok(target.into())
    }

    /// Rename `from` to `to`, both in this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(nix::fcntl::renameat(
            self.fd(),
            &*c(from)?,
            self.fd(),
            &*c(to)?,
        )?)
    }

    /// Remove the file `name` (a link itself, never its target).
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        Ok(nix::unistd::unlinkat(
            self.fd(),
            &*c(name)?,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )?)
    }

    /// Whether `name` here (through a last symlink) is `file`.
    pub fn holds(&self, name: &OsStr, file: &std::fs::Metadata) -> bool {
        let flags = nix::fcntl::AtFlags::empty();
        c(name)
            .and_then(|name| Ok(nix::sys::stat::fstatat(self.fd(), &*name, flags)?))
            .is_ok_and(|m| (m.st_dev, m.st_ino) == (file.dev(), file.ino()))
    }
}

/// Replace `path` with `content`, so that readers see the old file or the
/// whole new one, and nothing is written through a planted link.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let (dir, name) = locate(path)?;
    let mut tmp = OsString::from(name);
    tmp.push(".tmp");
    match dir.remove(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
    let fd = openat(dir.fd(), &*c(&tmp)?, flags, Mode::from_bits_truncate(0o644))?;
    let written = File::from(fd).write_all(content);
    // A full disk: no empty temporary is left behind.
    let done = written.and_then(|()| dir.rename(&tmp, name));
    if done.is_err() {
        let _ = dir.remove(&tmp);
    }
    done
}

/// `name` for the system calls, which take it NUL-terminated (converted
/// here once, rather than by every call).
fn c(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// `name` as a path, for messages.
fn shown(name: &CStr) -> &Path {
    Path::new(OsStr::from_bytes(name.to_bytes()))
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
/// (The config reader opens that way too, against a FIFO with no writer.)
pub fn blocking(file: &File) -> io::Result<()> {
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
    fn a_parent_link_is_followed_only_out_of_a_trusted_directory() {
        let d = scratch("parent");
        let victim = d.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("a.log"), "secret\n").unwrap();
        let storage = d.join("storage");
        std::fs::create_dir(&storage).unwrap();
        std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o777)).unwrap();
        symlink(&victim, storage.join("logs")).unwrap();
        let log = storage.join("logs/a.log");
        let e = append(&log, 0o640).unwrap_err();
        assert!(e.to_string().starts_with("logs is a symlink in "), "{e}");
        assert!(write_atomically(&storage.join("logs/ready"), b"x").is_err());
        assert!(remove(&log).is_err());
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_to_string(victim.join("a.log")).unwrap(),
            "secret\n"
        );
        // Writable by no one else: followed, for every use.
        std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o755)).unwrap();
        append(&log, 0o640).unwrap().write_all(b"ok\n").unwrap();
        write_atomically(&storage.join("logs/ready"), b"x").unwrap();
        assert_eq!(std::fs::read_to_string(victim.join("ready")).unwrap(), "x");
        remove(&storage.join("logs/ready")).unwrap();
        assert_eq!(
            std::fs::read_to_string(victim.join("a.log")).unwrap(),
            "secret\nok\n"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn check_predicts_what_append_refuses_without_creating_anything() {
        let d = scratch("check");
        let victim = d.join("victim");
        std::fs::create_dir(&victim).unwrap();
        let storage = d.join("storage");
        std::fs::create_dir(&storage).unwrap();
        std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o777)).unwrap();
        symlink(&victim, storage.join("logs")).unwrap();
        symlink(victim.join("x.log"), storage.join("x.log")).unwrap();
        // Trusted: our own directory and link, a file not there yet.
        symlink(&victim, d.join("own")).unwrap();
        for ok in ["own/new.log", "victim/new.log", "nowhere/a.log"] {
            check(&d.join(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, said) in [
            ("storage/logs/a.log", "logs is a symlink in "),
            ("storage/x.log", "x.log is a symlink in "),
        ] {
            let e = check(&d.join(bad)).unwrap_err();
            assert!(e.to_string().starts_with(said), "{bad}: {e}");
            assert_eq!(
                e.to_string(),
                append(&d.join(bad), 0o640).unwrap_err().to_string()
            );
        }
        assert!(check(Path::new("/dev/stdout")).is_ok());
        // Nothing was created.
        let made: Vec<_> = std::fs::read_dir(&victim).unwrap().collect();
        assert!(made.is_empty(), "{made:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_parent_step_is_taken_only_below_directories_nobody_else_may_change() {
        let d = scratch("dotdot");
        let storage = d.join("storage");
        std::fs::create_dir_all(storage.join("sub")).unwrap();
        std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = append(&storage.join("sub/../../a.log"), 0o640).unwrap_err();
        assert!(e.to_string().starts_with("a `..` below "), "{e}");
        assert!(!d.join("a.log").exists());
        std::fs::remove_dir_all(&d).unwrap();
        // Root's own directories: as the kernel takes it.
        assert!(append(Path::new("/dev/../dev/null"), 0o640).is_ok());
    }

    #[test]
    fn a_loop_of_links_ends() {
        let d = scratch("loop");
        symlink(d.join("y"), d.join("x")).unwrap();
        symlink(d.join("x"), d.join("y")).unwrap();
        for p in ["x/a.log", "x"] {
            let e = append(&d.join(p), 0o640).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        }
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
