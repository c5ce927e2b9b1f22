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

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    openapi();
    let musl = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if musl && release {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
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
