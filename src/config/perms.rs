//! Who else may change what sheepdog trusts: the configuration file and
//! its directory (a reload, or the next start, runs its commands as
//! sheepdog's user, usually root) and the API token (`api_auth_file`, or
//! `api_auth` written in the file itself).
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
    let ours = nix::unistd::geteuid().as_raw();
    let trusted = |m: &Metadata| m.uid() == 0 || m.uid() == ours;
    // A sticky directory (/tmp) lets others add names, not replace ours.
    let loose = |m: &Metadata| {
        !trusted(m) || (m.mode() & 0o022 != 0 && !(m.is_dir() && m.mode() & 0o1000 != 0))
    };
    let warns = &mut cfg.warnings;
    let mut warn = |key: &str, p: &Path, m: &Metadata, why: &str| {
        let (uid, mode) = (m.uid(), m.mode() & 0o7777);
        warns.push(format!(
            "{key}{} (owner uid {uid}, mode {mode:04o}) {why}",
            p.display()
        ));
    };
    // `sheepdog.yaml` has the parent "", which is the working directory.
    let dir = path
        .parent()
        .filter(|d| *d != Path::new(""))
        .unwrap_or(Path::new("."));
    let writable = "is writable by others than root and sheepdog: they can have sheepdog run \
         any command as its user at the next reload or start; make it owned by root and not \
         group- or world-writable";
    for (key, p) in [
        ("configuration file ", path),
        ("configuration directory ", dir),
    ] {
        if let Some(m) = std::fs::metadata(p).ok().filter(|m| loose(m)) {
            warn(key, p, &m, writable);
        }
    }
    let api = &cfg.global.api;
    if let Some(f) = &api.auth_file {
        if let Some(m) = std::fs::metadata(f)
            .ok()
            .filter(|m| loose(m) || m.mode() & 0o044 != 0)
        {
            let why = "can be read or changed by others than root and sheepdog; chmod 0400 \
                 and make it owned by sheepdog's user";
            warn("global.api_auth_file: ", f, &m, why);
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
