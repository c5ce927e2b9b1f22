//! Explains an exec failure whose errno alone misleads the operator.
//!
//! `execve` says ENOENT when the program exists but its interpreter does
//! not (a `#!` line naming a missing shell, or a glibc binary on musl whose
//! ELF loader is absent), EACCES for a directory, and ENOEXEC for a script
//! without `#!`. This runs in the parent after a failed spawn, so it may
//! read files; it is best effort: no hint when the file cannot be read.
//!
//! Invariant: reads at most the first 4 KiB of the program and never
//! panics on a short or malformed file.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How much of the file is read: the `#!` line and the ELF program headers
/// of any ordinary binary fit.
const HEAD: u64 = 4096;

/// A sentence to append to the OS error of a failed exec of `program`, or
/// None when the errno says it all.
pub fn explain(program: &Path, errno: i32) -> Option<String> {
    let meta = fs::metadata(program).ok()?;
    let shown = program.display();
    match errno {
        libc::EACCES if meta.is_dir() => Some(format!("{shown} is a directory")),
        libc::EACCES if meta.permissions().mode() & 0o111 == 0 => Some(format!(
            "{shown} is not executable (mode {:o})",
            meta.permissions().mode() & 0o7777
        )),
        libc::ENOENT => {
            let head = head(program)?;
            if let Some(interp) = shebang(&head) {
                // "/bin/sh\r": a script saved with Windows line endings.
                let (interp, rest) = match interp.strip_suffix('\r') {
                    Some(bare) => (
                        bare,
                        "\\r, which was not found (its lines end in \\r\\n: convert it with dos2unix)",
                    ),
                    None => (interp.as_str(), ", which was not found"),
                };
                return Some(format!(
                    "{shown} exists, but its #! line names {interp}{rest}"
                ));
            }
            elf_interpreter(&head).map(|interp| {
                format!(
                    "{shown} exists, but its ELF loader {interp} was not found \
                     (a binary built for another libc, e.g. glibc on Alpine?)"
                )
            })
        }
        libc::ENOEXEC => Some(format!(
            "{shown} is neither a binary for this machine nor a script starting with #!"
        )),
        _ => None,
    }
}

fn head(program: &Path) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    fs::File::open(program)
        .ok()?
        .take(HEAD)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// The interpreter path of a `#!` line, as the kernel reads it: up to a
/// space or a tab, so a `\r` before the newline is part of it.
fn shebang(head: &[u8]) -> Option<String> {
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let interp = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|w| !w.is_empty())?;
    Some(String::from_utf8_lossy(interp).into_owned())
}

/// PT_INTERP of a 64- or 32-bit little-endian ELF file, if it is within
/// `head`.
fn elf_interpreter(head: &[u8]) -> Option<String> {
    if head.get(..4)? != b"\x7fELF" || *head.get(5)? != 1 {
        return None;
    }
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let int = |at: usize, len: usize| -> Option<usize> {
        let bytes = head.get(at..at.checked_add(len)?)?;
        let mut v: u64 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            v |= u64::from(b) << (8 * i);
        }
        usize::try_from(v).ok()
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(0x20, 8)?, int(0x36, 2)?, int(0x38, 2)?)
    } else {
        (int(0x1c, 4)?, int(0x2a, 2)?, int(0x2c, 2)?)
    };
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if int(ph, 4)? != 3 {
            continue; // not PT_INTERP
        }
        let (offset, size) = if wide {
            (int(ph + 8, 8)?, int(ph + 32, 8)?)
        } else {
            (int(ph + 4, 4)?, int(ph + 16, 4)?)
        };
        let path = head.get(offset..offset.checked_add(size)?)?;
        let path = path.split(|&b| b == 0).next()?;
        return Some(String::from_utf8_lossy(path).into_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_names_the_interpreter() {
        assert_eq!(shebang(b"#!/bin/sh -e\necho"), Some("/bin/sh".into()));
        assert_eq!(
            shebang(b"#! /usr/bin/env php\r\n"),
            Some("/usr/bin/env".into())
        );
        assert_eq!(shebang(b"#!/bin/sh\r\n"), Some("/bin/sh\r".into()));
        assert_eq!(shebang(b"#!\n"), None);
        assert_eq!(shebang(b"echo hi\n"), None);
    }

    #[test]
    fn elf_interpreter_of_a_real_binary_or_none_for_junk() {
        // /bin/sh is dynamically linked on the test machines (glibc or
        // musl), so it names some loader; its exact path differs.
        let head = head(Path::new("/bin/sh")).expect("/bin/sh is readable");
        let interp = elf_interpreter(&head);
        assert!(
            interp.as_deref().is_some_and(|i| i.starts_with('/')),
            "{interp:?}"
        );
        assert_eq!(elf_interpreter(b"\x7fELF\x02\x01"), None);
        assert_eq!(elf_interpreter(b"\x7fELF"), None);
        assert_eq!(elf_interpreter(b"#!/bin/sh"), None);
        let mut bad = vec![0u8; 64];
        bad[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bad[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        bad[0x38] = 1;
        assert_eq!(elf_interpreter(&bad), None);
    }

    #[test]
    fn explains_directories_and_missing_interpreters() {
        let dir = std::env::temp_dir().join(format!("sheepdog-exec-error-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s");
        fs::write(&script, "#!/nonexistent/interp\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
        let hint = explain(&script, libc::ENOENT).unwrap_or_default();
        assert!(hint.contains("/nonexistent/interp"), "{hint}");
        let hint = explain(&dir, libc::EACCES).unwrap_or_default();
        assert!(hint.contains("is a directory"), "{hint}");
        let hint = explain(&script, libc::EACCES).unwrap_or_default();
        assert!(hint.contains("not executable (mode 644)"), "{hint}");
        assert_eq!(explain(&dir.join("missing"), libc::ENOENT), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
