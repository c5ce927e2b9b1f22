//! Link-time settings for the static musl binary, and the OpenAPI
//! document the API serves (`openapi`).
//!
//! Release builds for musl pack their relative relocations (`DT_RELR`):
//! a static-PIE binary relocates itself at start-up from a table of one
//! 24-byte entry per pointer (74 KiB here); the packed form is a bitmap of
//! about 1 KiB. Smaller file, fewer pages touched at start. musl applies
//! RELR since 1.2.4 (Rust's bundled musl and Alpine ≥ 3.18 have it); GNU ld
//! since 2.38. glibc builds are left alone: glibc < 2.36 cannot load RELR.
//! `-bins` keeps it to the sheepdog binary (never proc-macros or tests).
//!
//! They are also linked by the toolchain's own lld, the way rustc itself
//! links x86_64-unknown-linux-gnu since 1.90 (`-B <sysroot>/lib/rustlib/
//! <host>/bin/gcc-ld -fuse-ld=lld`), with identical code folding: B-tree,
//! channel and drop code instantiated for many types compiles to the same
//! bytes, and `--icf=all` keeps one copy (−26 KiB). lld also lays segments
//! out without padding each to a page in the file (−6 KiB). Rust promises
//! no distinct addresses for functions or vtables, and nothing here compares
//! them. A toolchain without rust-lld gets the system linker, as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    openapi();
    let musl = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if musl && release {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        if let Some(dir) = rust_lld_dir() {
            println!("cargo:rustc-link-arg-bins=-B{}", dir.display());
            println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
            println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
        }
    }
}

/// The directory whose `ld.lld` runs the toolchain's rust-lld, if it has one.
fn rust_lld_dir() -> Option<std::path::PathBuf> {
    let rustc = std::env::var_os("RUSTC")?;
    let host = std::env::var("HOST").ok()?;
    let out = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let dir = std::path::Path::new(sysroot.trim()).join(format!("lib/rustlib/{host}/bin/gcc-ld"));
    dir.join("ld.lld").is_file().then_some(dir)
}

/// `$OUT_DIR/openapi.json`, what `GET /api/v1/openapi.json` serves:
/// docs/openapi.json without whitespace, its `description` texts and its
/// `tags` (groups for a viewer; docs/api.md and the shipped file keep
/// them). Every path, operation (with its summary), parameter and schema
/// stays whole. 41 → 25 KiB of the binary, which is held under 2 MiB
/// (docs/performance.md).
fn openapi() {
    println!("cargo:rerun-if-changed=docs/openapi.json");
    let text = std::fs::read_to_string("docs/openapi.json").expect("read docs/openapi.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).expect("docs/openapi.json is JSON");
    drop_descriptions(&mut doc);
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("openapi.json"), doc.to_string()).expect("write openapi.json");
}

/// Remove every `"description": "<text>"` and `"tags": [...]` below `v`
/// (a field of a schema that is itself named `description` or `tags` has
/// an object value and stays).
fn drop_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|k, v| !(k == "description" && v.is_string() || k == "tags" && v.is_array()));
            m.values_mut().for_each(drop_descriptions);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_descriptions),
        _ => {}
    }
}
