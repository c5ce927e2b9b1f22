//! The OpenAPI 3 document served at `GET /api/v1/openapi.json`.
//!
//! Invariant: the document is `docs/openapi.json`, compiled in, and it
//! describes exactly the routes of `routes::ROUTES` (method and path, both
//! ways), which the tests below check; they also check that docs/api.md
//! documents every route.

use super::http::{Response, JSON};

/// The document, as shipped in docs/.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

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
            if let Endpoint::Later(_) = r.endpoint {
                assert!(responses.contains_key("501"), "{} {}", r.method, r.path);
            }
            if r.auth {
                assert!(responses.contains_key("401"), "{} {}", r.method, r.path);
            }
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
