//! The contract: `docs/openapi.yaml`, read at test time, and the check of a reply against
//! what it documents for an operation and status.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};
use travel::Service;

use crate::app::Reply;

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// `docs/openapi.yaml`, read at test time, every `$ref` replaced by what it points to.
pub struct Contract {
    pub doc: Value,
}

impl Contract {
    pub fn load() -> Self {
        let path = repo_file("docs/openapi.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let raw: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        assert_eq!(raw["openapi"], "3.1.0", "the contract is OpenAPI 3.1");
        Contract {
            doc: inline_refs(&raw, &raw, 0),
        }
    }

    /// Every operation: (path, method, tag).
    pub fn operations(&self) -> BTreeSet<(String, String, String)> {
        let mut out = BTreeSet::new();
        let paths = self.doc["paths"].as_object().expect("`paths` is a map");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("a path item is a map") {
                if ![
                    "get", "put", "post", "delete", "patch", "head", "options", "trace",
                ]
                .contains(&method.as_str())
                {
                    continue;
                }
                let tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or_default();
                assert_eq!(
                    tags.len(),
                    1,
                    "{method} {path}: exactly one tag (its service)"
                );
                let tag = tags[0].as_str().unwrap().to_owned();
                out.insert((path.clone(), method.to_uppercase(), tag));
            }
        }
        out
    }

    pub fn operation(&self, method: &Method, path: &str) -> Option<&Value> {
        self.doc["paths"]
            .get(path)?
            .get(method.as_str().to_ascii_lowercase())
    }

    /// The service an operation's tag names.
    pub fn service(&self, path: &str) -> Service {
        let tag = self
            .operations()
            .into_iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, tag)| tag)
            .unwrap_or_else(|| panic!("{path} is not in the contract"));
        tag.parse()
            .unwrap_or_else(|e| panic!("tag {tag:?} of {path} names no service: {e}"))
    }

    /// Whether an operation needs credentials (its own `security`, else the document's).
    pub fn is_protected(&self, op: &Value) -> bool {
        let security = op.get("security").unwrap_or(&self.doc["security"]);
        let alternatives = security.as_array().map(Vec::as_slice).unwrap_or_default();
        !alternatives.is_empty()
            && alternatives
                .iter()
                .all(|req| req.as_object().is_some_and(|r| !r.is_empty()))
    }

    /// Check a reply against the response the contract documents for `method path` and its
    /// status; panics naming every difference.
    pub fn check(&self, method: &Method, path: &str, reply: &Reply) {
        let what = format!("{method} {path} -> {}", reply.status.as_u16());
        let op = self
            .operation(method, path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the contract"));
        let status = reply.status.as_u16().to_string();
        let response = op["responses"].get(&status).unwrap_or_else(|| {
            panic!(
                "{what}: status not documented (documented: {:?}); body {}",
                op["responses"]
                    .as_object()
                    .map(|r| r.keys().collect::<Vec<_>>()),
                reply.body
            )
        });
        self.check_response(&what, response, reply);
    }

    /// Check a reply against a response object of the contract.
    pub fn check_response(&self, what: &str, response: &Value, reply: &Reply) {
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, header) in headers {
                let from_gateway = header["x-set-by"] == "gateway";
                match reply.headers.get(name.as_str()) {
                    None => assert!(
                        from_gateway || header["required"] != true,
                        "{what}: required header {name} missing; headers {:?}",
                        reply.headers
                    ),
                    Some(value) => {
                        let value = value.to_str().unwrap_or_default();
                        let schema = &header["schema"];
                        let value = match schema["type"].as_str() {
                            Some("integer") => value
                                .parse::<i64>()
                                .map_or_else(|_| json!(value), |n| json!(n)),
                            _ => json!(value),
                        };
                        validate(schema, &value, &format!("{what}: header {name}"));
                    }
                }
            }
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(
                reply.body.is_empty(),
                "{what}: a body where none is documented"
            );
            return;
        };
        let media_type = reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{what}: no Content-Type"));
        let media = content.get(&media_type).unwrap_or_else(|| {
            panic!(
                "{what}: Content-Type {media_type} not documented (documented: {:?})",
                content.keys().collect::<Vec<_>>()
            )
        });
        if let Some(schema) = media.get("schema") {
            let body: Value = serde_json::from_str(&reply.body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {:?}", reply.body));
            validate(schema, &body, &format!("{what}: body"));
        } else if let Some(schema) = media.get("x-raw-body") {
            validate(schema, &json!(reply.body), &format!("{what}: raw body"));
        }
    }
}

/// `value` with every local `$ref` replaced by its target (siblings of `$ref` win, as OpenAPI
/// 3.1 allows for `summary`/`description`). The contract has no recursive schemas.
fn inline_refs(value: &Value, root: &Value, depth: usize) -> Value {
    assert!(depth < 32, "$ref cycle in the contract");
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("only local $refs are supported: {reference}"));
                let target = root
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("$ref {reference} points to nothing"));
                let mut resolved = inline_refs(target, root, depth + 1);
                if let Value::Object(out) = &mut resolved {
                    for (k, v) in map.iter().filter(|(k, _)| *k != "$ref") {
                        out.insert(k.clone(), inline_refs(v, root, depth));
                    }
                }
                resolved
            } else {
                Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), inline_refs(v, root, depth)))
                        .collect(),
                )
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline_refs(v, root, depth)).collect())
        }
        other => other.clone(),
    }
}

/// Validate `instance` against a JSON Schema 2020-12 `schema`, listing every violation.
fn validate(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::draft202012::new(schema)
        .unwrap_or_else(|e| panic!("{what}: the contract's schema is invalid: {e}\n{schema:#}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} violates the contract:\n  {}\nvalue: {instance}",
        errors.join("\n  ")
    );
}
