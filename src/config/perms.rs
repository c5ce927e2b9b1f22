//! Who else may change what sheepdog trusts: the configuration file and
//! every directory above it, as written and where it really is (a reload,
//! or the next start, runs its commands as sheepdog's user, usually root),
//! and the API token (`api_auth_file`, or `api_auth` written in the file
//! itself). Read-only mounts (a Kubernetes ConfigMap's) and sticky
//! directories (/tmp) are not counted.
//!
//! Findings are warnings, not refusals: images often carry odd modes (a
//! bind mount with the host's uids, a secret mounted 0644, files copied in
//! by a build as uid 1000) and refusing to start PID 1 there would break
//! containers that run; `check` shows them before deployment. Only what
//! the file system says is read; nothing is changed.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::model::Config;

/// Add a warning to `cfg` for each thing others than root and sheepdog's
/// uid can change or read. `text` is the file as read, to tell a token
/// written in it from one substituted from the environment.
pub fn check(path: &Path, text: &str, cfg: &mut Config) {
    let warns = &mut cfg.warnings;
    let mut warn = |key: &str, p: &Path, m: &Metadata, why: &str| {
        let (uid, mode) = (m.uid(), m.mode() & 0o7777);
        warns.push(format!(
            "{key}{} (owner uid {uid}, mode {mode:04o}) {why}",
            p.display()
        ));
    };
    // Every directory from `/` down, as written (whoever can change one
    // can replace what is below it, a symlink included) and where the file
    // really is; the first that others may change is named.
    let written = std::env::current_dir().map_or(path.to_path_buf(), |d| d.join(path));
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| written.clone());
    let loose = [&written, &real].into_iter().find_map(|p| {
        let mut on_path = p
            .ancestors()
            .filter_map(|a| Some((a, std::fs::metadata(a).ok()?)));
        on_path.find(|(a, m)| changeable(a, m))
    });
    if let Some((p, m)) = loose {
        let key = if m.is_dir() {
            "configuration directory "
        } else {
            "configuration file "
        };
        warn(
            key,
            p,
            &m,
            "can be changed by others than root and sheepdog: they can have sheepdog run \
             any command as its user at the next reload or start; make it owned by root and \
             not group- or world-writable",
        );
    }
    let api = &cfg.global.api;
    if let Some(f) = &api.auth_file {
        // Anything but a file is refused with its own message.
        if let Some(m) = std::fs::metadata(f).ok().filter(Metadata::is_file) {
            let why = if changeable(f, &m) {
                "can be changed by others than root and sheepdog"
            } else {
                "can be read by its group or everyone"
            };
            if changeable(f, &m) || m.mode() & 0o044 != 0 {
                warn(
                    "global.api_auth_file: ",
                    f,
                    &m,
                    &format!(
                        "{why}; make it sheepdog's, mode 0400 (a Kubernetes Secret: \
                         defaultMode: 0400)"
                    ),
                );
            }
        }
    }
    let inline = api.auth.as_deref().is_some_and(|t| text.contains(t));
    if let Some(m) = std::fs::metadata(path)
        .ok()
        .filter(|m| inline && m.mode() & 0o044 != 0)
    {
        let why = "holds the token, and others can read it; use api_auth_file (mode 0400)";
        warn("global.api_auth: ", path, &m, why);
    }
}

/// Whether others than root and sheepdog's uid may change `p`
/// (`safe_open::others_may_change`). A sticky directory (/tmp) lets others
/// add names, not replace ours; a read-only mount (a Kubernetes
/// ConfigMap's, mode 0777) lets nobody change anything.
fn changeable(p: &Path, m: &Metadata) -> bool {
    let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0;
    let mode = if sticky_dir {
        m.mode() & !0o022
    } else {
        m.mode()
    };
    crate::safe_open::others_may_change(m.uid(), mode)
        && !nix::sys::statvfs::statvfs(p)
            .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}
