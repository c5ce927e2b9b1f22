//! The OpenAPI 3 document served at `GET /api/v1/openapi.json`.
//!
//! Invariant: the document is `docs/openapi.json`, compiled in, and it
//! describes exactly the routes of `routes::ROUTES` (method and path, both
//! ways), which the tests below check; they also check that docs/api.md
//! documents every route.

use super::http::{Response, JSON};

/// The document as shipped in docs/ (pretty-printed, for people).
const SHIPPED: &str = include_str!("../../docs/openapi.json");

/// The same document without the whitespace between tokens: what is
/// compiled in and served (32 KiB instead of 58 KiB in the binary). The
/// pretty text is only read at compile time.
pub static DOCUMENT: &str = match std::str::from_utf8(&MINIFIED) {
    Ok(s) => s,
    // Only ASCII whitespace outside strings is dropped, so UTF-8 in stays
    // UTF-8 out; a failure here fails the build, not a request.
    Err(_) => panic!("minified openapi.json is not UTF-8"),
};

static MINIFIED: [u8; minified_len(SHIPPED.as_bytes())] = minify(SHIPPED.as_bytes());

/// Whether byte `i` of JSON text is kept: inside a string, or not
/// whitespace. `in_string` and `escaped` carry the string state across calls.
const fn significant(json: &[u8], i: usize, in_string: &mut bool, escaped: &mut bool) -> bool {
    let b = json[i];
    if *in_string {
        if *escaped {
            *escaped = false;
        } else if b == b'\\' {
            *escaped = true;
        } else if b == b'"' {
            *in_string = false;
        }
        return true;
    }
    if b == b'"' {
        *in_string = true;
    }
    !matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

const fn minified_len(json: &[u8]) -> usize {
    let (mut n, mut i, mut in_string, mut escaped) = (0, 0, false, false);
    while i < json.len() {
        if significant(json, i, &mut in_string, &mut escaped) {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn minify<const N: usize>(json: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let (mut n, mut i, mut in_string, mut escaped) = (0, 0, false, false);
    while i < json.len() {
        if significant(json, i, &mut in_string, &mut escaped) {
            out[n] = json[i];
            n += 1;
        }
        i += 1;
    }
    out
}

pub fn response() -> Response {
    Response::text(200, JSON, DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::{Endpoint, ROUTES};
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
    }

    #[test]
    fn the_served_document_is_the_shipped_one_minified() {
        let shipped: Value = serde_json::from_str(SHIPPED).unwrap();
        assert_eq!(doc(), shipped);
        assert!(DOCUMENT.len() < SHIPPED.len() * 2 / 3, "{}", DOCUMENT.len());
        // Whitespace and escapes inside strings survive.
        const TRICKY: &str = "{ \"a b\" : [ \"x \\\" \\\\\" , 1 ,\n\t\"\\u00e9 é\" ] }";
        const OUT: [u8; minified_len(TRICKY.as_bytes())] = minify(TRICKY.as_bytes());
        let out = std::str::from_utf8(&OUT).unwrap();
        assert_eq!(out, "{\"a b\":[\"x \\\" \\\\\",1,\"\\u00e9 é\"]}");
        assert_eq!(
            serde_json::from_str::<Value>(out).unwrap(),
            serde_json::from_str::<Value>(TRICKY).unwrap()
        );
    }

    #[test]
    fn is_openapi_3_for_this_version() {
        let d = doc();
        assert!(d["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(d["info"]["version"], crate::VERSION);
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let d = doc();
        let paths = d["paths"].as_object().unwrap();
        for r in ROUTES {
            let op = &paths
                .get(r.path)
                .unwrap_or_else(|| panic!("{} missing from docs/openapi.json", r.path))
                [r.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", r.method, r.path);
            // Security: health and ready are open, the rest need the token.
            let open = op["security"].as_array().is_some_and(|s| s.is_empty());
            assert_eq!(open, !r.auth, "{} {}: security", r.method, r.path);
            let responses = op["responses"].as_object().unwrap();
            if r.auth {
                assert!(responses.contains_key("401"), "{} {}", r.method, r.path);
            }
            // A reload answers with its summary, 409 during shutdown and
            // 422 for a file it cannot use; no route answers 501 any more.
            if let Endpoint::Reload = r.endpoint {
                for code in ["200", "409", "422"] {
                    assert!(
                        responses.contains_key(code),
                        "{} {}: {code}",
                        r.method,
                        r.path
                    );
                }
            }
            assert!(!responses.contains_key("501"), "{} {}", r.method, r.path);
            if r.path.contains("{name}") {
                assert!(op["parameters"].is_array(), "{} {}", r.method, r.path);
            }
        }
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.path == path && r.method.eq_ignore_ascii_case(method)),
                    "docs/openapi.json documents {method} {path}, which the router does not serve"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let d = doc();
        let mut refs = Vec::new();
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|x| walk(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(&d, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(d.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }

    #[test]
    fn docs_api_md_covers_every_route() {
        let md = include_str!("../../docs/api.md");
        for r in ROUTES {
            assert!(
                md.contains(&format!("{} {}", r.method, r.path)),
                "docs/api.md does not document {} {}",
                r.method,
                r.path
            );
        }
    }
}
