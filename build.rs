//! Link-time settings for the static musl binary; nothing is generated.
//!
//! Release builds for musl pack their relative relocations (`DT_RELR`):
//! a static-PIE binary relocates itself at start-up from a table of one
//! 24-byte entry per pointer (74 KiB here); the packed form is a bitmap of
//! about 1 KiB. Smaller file, fewer pages touched at start. musl applies
//! RELR since 1.2.4 (Rust's bundled musl and Alpine ≥ 3.18 have it); GNU ld
//! since 2.38. glibc builds are left alone: glibc < 2.36 cannot load RELR.
//! `-bins` keeps it to the sheepdog binary (never proc-macros or tests).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let musl = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if musl && release {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
