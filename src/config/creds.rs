//! `user`/`group` → numeric credentials, resolved once at load time.
//!
//! Rules (documented in docs/configuration.md):
//! - `user` is a name (must exist in the passwd database) or a numeric uid
//!   (may be absent from it, as in many images that run as e.g. 1000);
//! - `group` is a name (must exist) or a numeric gid;
//! - gid = `group` if set, else the user's primary group, else — for a
//!   numeric uid with no passwd entry — the same number as the uid;
//! - supplementary groups = the user's groups from the group database
//!   (`getgrouplist`), or empty when the user has no passwd entry;
//! - `group` without `user` keeps sheepdog's own uid and sets only the
//!   group (supplementary groups = just that group).
//!
//! Invariant: an unknown *name* is always an error (never a silent run as
//! root); lookups only read the system databases.

use std::ffi::CString;

use nix::unistd::{geteuid, getgrouplist, Gid, Group, Uid, User};

use super::model::Credentials;
use super::value::quote;

/// Which key a resolution error belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredError {
    User(String),
    Group(String),
}

/// Resolve `user`/`group`; `None` when neither is set.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Credentials>, CredError> {
    let gid = match group {
        Some(g) => Some(group_id(g).map_err(CredError::Group)?),
        None => None,
    };
    let Some(user) = user else {
        let Some(gid) = gid else {
            return Ok(None);
        };
        let uid = geteuid();
        let name = User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.as_raw().to_string());
        return Ok(Some(Credentials {
            user: name,
            uid: uid.as_raw(),
            gid,
            groups: vec![gid],
            login: None,
        }));
    };
    let entry = if is_number(user) {
        let uid: u32 = user
            .parse()
            .ok()
            // 4294967295 is (uid_t)-1, "no change" to setuid: never a user.
            .filter(|&u| u != u32::MAX)
            .ok_or_else(|| {
                CredError::User(format!(
                    "uid {user} is out of range; expected a uid from 0 to 4294967294"
                ))
            })?;
        match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(u)) => u,
            Ok(None) => {
                let gid = gid.unwrap_or(uid);
                return Ok(Some(Credentials {
                    user: user.to_string(),
                    uid,
                    gid,
                    groups: Vec::new(),
                    login: None,
                }));
            }
            Err(e) => {
                return Err(CredError::User(format!("unable to look up uid {uid}: {e}")));
            }
        }
    } else {
        match User::from_name(user) {
            Ok(Some(u)) => u,
            Ok(None) => {
                return Err(CredError::User(format!(
                    "unknown user {}; expected a user that exists in this system's passwd \
                     database, or a numeric uid",
                    quote(user)
                )))
            }
            Err(e) => {
                return Err(CredError::User(format!(
                    "unable to look up user {}: {e}",
                    quote(user)
                )))
            }
        }
    };
    let gid = gid.unwrap_or(entry.gid.as_raw());
    let cname = CString::new(entry.name.as_str())
        .map_err(|_| CredError::User(format!("user name {} contains NUL", quote(user))))?;
    let groups = getgrouplist(&cname, Gid::from_raw(gid))
        .map_err(|e| {
            CredError::User(format!(
                "unable to list the groups of user {}: {e}",
                quote(&entry.name)
            ))
        })?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    Ok(Some(Credentials {
        user: user.to_string(),
        uid: entry.uid.as_raw(),
        gid,
        groups,
        login: Some((entry.name, entry.dir.to_string_lossy().into_owned())),
    }))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn group_id(group: &str) -> Result<u32, String> {
    if is_number(group) {
        // 4294967295 is (gid_t)-1, "no change" to setgid: never a group.
        return group
            .parse()
            .ok()
            .filter(|&g| g != u32::MAX)
            .ok_or_else(|| {
                format!("gid {group} is out of range; expected a gid from 0 to 4294967294")
            });
    }
    match Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!(
            "unknown group {}; expected a group that exists in this system's group database, \
             or a numeric gid",
            quote(group)
        )),
        Err(e) => Err(format!("unable to look up group {}: {e}", quote(group))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set() {
        assert_eq!(resolve(None, None), Ok(None));
    }

    #[test]
    fn the_no_change_ids_are_refused() {
        assert_eq!(
            resolve(Some("4294967295"), None),
            Err(CredError::User(
                "uid 4294967295 is out of range; expected a uid from 0 to 4294967294".into()
            ))
        );
        assert_eq!(
            resolve(None, Some("4294967295")),
            Err(CredError::Group(
                "gid 4294967295 is out of range; expected a gid from 0 to 4294967294".into()
            ))
        );
        assert!(resolve(Some("4294967294"), None).is_ok());
    }

    #[test]
    fn root_by_name_and_number() {
        let c = resolve(Some("root"), None).unwrap().unwrap();
        assert_eq!((c.uid, c.gid), (0, 0));
        assert!(c.groups.contains(&0));
        assert_eq!(c.user, "root");
        let c = resolve(Some("0"), Some("0")).unwrap().unwrap();
        assert_eq!((c.uid, c.gid), (0, 0));
    }

    #[test]
    fn numeric_uid_without_passwd_entry() {
        let c = resolve(Some("4242424"), None).unwrap().unwrap();
        assert_eq!((c.uid, c.gid), (4242424, 4242424));
        assert!(c.groups.is_empty());
        let c = resolve(Some("4242424"), Some("31337")).unwrap().unwrap();
        assert_eq!(c.gid, 31337);
    }

    #[test]
    fn group_only_keeps_our_uid() {
        let c = resolve(None, Some("0")).unwrap().unwrap();
        assert_eq!(c.uid, geteuid().as_raw());
        assert_eq!(c.groups, vec![0]);
    }

    #[test]
    fn unknown_names_are_errors() {
        match resolve(Some("no-such-user-sheepdog"), None) {
            Err(CredError::User(e)) => assert!(e.contains("unknown user"), "{e}"),
            other => panic!("{other:?}"),
        }
        match resolve(Some("root"), Some("no-such-group-sheepdog")) {
            Err(CredError::Group(e)) => assert!(e.contains("unknown group"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(Some("99999999999"), None),
            Err(CredError::User(_))
        ));
    }
}
