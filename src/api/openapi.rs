//! The OpenAPI 3 document served at `GET /api/v1/openapi.json`.
//!
//! Invariant: the document is `docs/openapi.json`, compiled in (minified,
//! its `description` texts and `tags` left out: build.rs), and it describes
//! exactly the routes of `routes::ROUTES` (method and path, both
//! ways), which the tests below check; they also check that docs/api.md
//! documents every route.

use super::http::{Response, JSON};

/// The document as shipped in docs/ (pretty-printed, for people); the
/// tests compare the served one with it.
#[cfg(test)]
const SHIPPED: &str = include_str!("../../docs/openapi.json");

/// What is served: the shipped document without whitespace, its
/// `description` texts and its `tags`, made by build.rs (41 → 25 KiB of
/// the binary).
pub static DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

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
    fn the_served_document_is_the_shipped_one_without_descriptions_or_tags() {
        let mut shipped: Value = serde_json::from_str(SHIPPED).unwrap();
        let served = doc();
        assert!(DOCUMENT.len() < SHIPPED.len() * 2 / 3, "{}", DOCUMENT.len());
        // Removing what build.rs removes gives the served document.
        fn strip(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    m.retain(|k, v| {
                        !(k == "description" && v.is_string() || k == "tags" && v.is_array())
                    });
                    m.values_mut().for_each(strip);
                }
                Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut shipped);
        assert_eq!(served, shipped);
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
                // Two Authorization headers: which would a proxy have
                // checked? Refused with 400 wherever the token is asked.
                assert!(responses.contains_key("400"), "{} {}", r.method, r.path);
            }
            // Without a token, a browser's request is refused on any route.
            assert!(responses.contains_key("403"), "{} {}", r.method, r.path);
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
