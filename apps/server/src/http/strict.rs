//! Strictness around every request, from the route table of the OpenAPI document:
//!
//! - [`around`] (outermost): the request id (`X-Request-Id`, accepted when printable ASCII of at
//!   most 128 characters, else generated) in a tracing span around everything the request logs
//!   and echoed in the answer; `Allow` on 405 answers; `X-Content-Type-Options: nosniff` on
//!   every answer and `Cache-Control: no-store` on those that carry tokens or personal data;
//!   the request metrics, by operation id and status.
//! - [`check_json`] (innermost, after the body limit): a JSON body with a duplicate key, or a
//!   top-level field whose JSON type is not its schema's, is a 400 `invalid_request` naming the
//!   field, before any operation (so before any WeChat call). poem-openapi would keep the last
//!   duplicate, and its type errors name neither the field nor hide the value. The checks
//!   themselves are `wxlogin_input::check_json` (pure, and fuzzed there).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use poem::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use poem::http::{HeaderName, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;
use tracing::Instrument as _;
use wxlogin_input::FieldTypes;

use crate::http::error::{ErrorCode, Failure};

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const NOSNIFF: HeaderName = HeaderName::from_static("x-content-type-options");

/// One path of the API: its segments (`None` for a `{param}`) and, per method, the operation
/// id and the JSON type of each top-level body field.
#[derive(Debug, Clone)]
struct PathEntry {
    segments: Vec<Option<String>>,
    methods: Vec<(Method, Operation)>,
}

#[derive(Debug, Clone)]
struct Operation {
    id: String,
    /// Field name → JSON type (`string`, `integer`, …) of a JSON body's top-level fields.
    fields: FieldTypes,
}

/// The routes of the API as its OpenAPI document lists them, plus the plain routes around it.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    paths: Vec<PathEntry>,
}

impl Routes {
    /// Reads the paths, methods, operation ids and JSON body fields from the OpenAPI document
    /// (`spec`, as `OpenApiService::spec` writes it), adding `extra` (path, method, operation).
    pub fn from_spec(spec: &str, extra: &[(&str, Method, &str)]) -> Self {
        let spec: Value = serde_json::from_str(spec).unwrap_or(Value::Null);
        let schemas = &spec["components"]["schemas"];
        let mut paths = Vec::new();
        if let Some(entries) = spec["paths"].as_object() {
            for (path, item) in entries {
                let Some(item) = item.as_object() else {
                    continue;
                };
                let methods = item
                    .iter()
                    .filter_map(|(method, op)| {
                        let method =
                            Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?;
                        let id = op["operationId"].as_str().unwrap_or(path).to_owned();
                        Some((
                            method,
                            Operation {
                                id,
                                fields: json_fields(op, schemas),
                            },
                        ))
                    })
                    .collect();
                paths.push(PathEntry {
                    segments: segments(path),
                    methods,
                });
            }
        }
        for (path, method, id) in extra {
            let op = Operation {
                id: (*id).to_owned(),
                fields: BTreeMap::new(),
            };
            paths.push(PathEntry {
                segments: segments(path),
                methods: vec![(method.clone(), op)],
            });
        }
        Self { paths }
    }

    fn entry(&self, path: &str) -> Option<&PathEntry> {
        let wanted: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        self.paths.iter().find(|entry| {
            entry.segments.len() == wanted.len()
                && entry.segments.iter().zip(&wanted).all(|(s, w)| match s {
                    Some(s) => s == w,
                    None => !w.is_empty(),
                })
        })
    }

    fn operation(&self, method: &Method, path: &str) -> Option<&Operation> {
        let entry = self.entry(path)?;
        entry
            .methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, op)| op)
    }

    /// The methods `path` answers, for `Allow` (`HEAD` with `GET`, as poem serves it).
    pub fn allowed(&self, path: &str) -> Option<String> {
        let entry = self.entry(path)?;
        let mut methods: Vec<&str> = entry.methods.iter().map(|(m, _)| m.as_str()).collect();
        if methods.contains(&"GET") {
            methods.push("HEAD");
        }
        methods.sort_unstable();
        methods.dedup();
        Some(methods.join(", "))
    }

    /// The metrics label of a request: its operation id, else a fixed name (never the raw
    /// path: its cardinality would be unbounded).
    fn label(&self, method: &Method, path: &str) -> String {
        if let Some(op) = self.operation(method, path) {
            return op.id.clone();
        }
        if path.starts_with("/docs") {
            "docs".to_owned()
        } else if path.starts_with("/mock") {
            "mock".to_owned()
        } else {
            "unmatched".to_owned()
        }
    }
}

fn segments(path: &str) -> Vec<Option<String>> {
    path.trim_end_matches('/')
        .split('/')
        .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
        .collect()
}

/// The top-level fields of an operation's JSON body schema (a `$ref` to a component).
fn json_fields(op: &Value, schemas: &Value) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let Some(content) = op["requestBody"]["content"].as_object() else {
        return fields;
    };
    for (media, body) in content {
        if !media.starts_with("application/json") {
            continue;
        }
        let schema = &body["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => &schemas[r.rsplit('/').next().unwrap_or_default()],
            None => schema,
        };
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                if let Some(ty) = prop["type"].as_str() {
                    fields.insert(name.clone(), ty.to_owned());
                }
            }
        }
    }
    fields
}

/// Whether `path` answers with tokens or personal data (never to be cached).
fn private(path: &str) -> bool {
    path == "/onLogin"
        || path == "/updateUserInfo"
        || path == "/api/v1"
        || path.starts_with("/api/v1/")
        || path == "/admin/v1"
        || path.starts_with("/admin/v1/")
}

/// The request id sent, when usable: 1–128 printable ASCII characters (no space, no control).
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned)
}

/// The outermost middleware (see the module doc).
pub async fn around<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    routes: Arc<Routes>,
) -> poem::Result<Response> {
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let result = ep.call(req).instrument(span).await;
    let mut response = match result {
        Ok(response) => response.into_response(),
        // `middleware::answer` turns every error into an answer; this is the last resort.
        Err(err) => err.into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(NOSNIFF, HeaderValue::from_static("nosniff"));
    if private(&path) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(poem::http::header::ALLOW)
        && let Some(allow) = routes
            .allowed(&path)
            .and_then(|a| HeaderValue::from_str(&a).ok())
    {
        response
            .headers_mut()
            .insert(poem::http::header::ALLOW, allow);
    }
    crate::metrics::request(
        &routes.label(&method, &path),
        response.status().as_u16(),
        started.elapsed(),
    );
    Ok(response)
}

/// Refuses a JSON body with a duplicate key or a top-level field of the wrong JSON type (see
/// the module doc). Runs after the body limit, so the body is in memory and bounded.
pub async fn check_json<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    routes: Arc<Routes>,
) -> poem::Result<Response> {
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start().to_ascii_lowercase();
            ct.starts_with("application/json") || ct.contains("+json")
        });
    if !is_json || !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let body = req.take_body().into_bytes().await?;
    if let Err(failure) = check_body(&body, routes.operation(req.method(), req.uri().path())) {
        return Err(failure.into());
    }
    req.set_body(body);
    ep.call(req).await.map(IntoResponse::into_response)
}

fn check_body(body: &[u8], op: Option<&Operation>) -> Result<(), Failure> {
    wxlogin_input::check_json(body, op.map(|op| &op.fields))
        .map_err(|e| Failure::new(ErrorCode::InvalidRequest).with_message(e.to_string(), zh(&e)))
}

/// A [`JsonBodyError`](wxlogin_input::JsonBodyError) in Simplified Chinese.
fn zh(e: &wxlogin_input::JsonBodyError) -> String {
    use wxlogin_input::JsonBodyError as E;
    match e {
        E::DuplicateKey(key) => format!("JSON 请求体中有重复的键 `{key}`"),
        E::WrongType { field, expected } => {
            let kind = match expected.as_str() {
                "string" => "字符串",
                "integer" => "整数",
                "number" => "数字",
                "boolean" => "布尔值",
                "array" => "数组",
                "object" => "对象",
                other => other,
            };
            format!("字段 `{field}` 必须是{kind}")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn op(fields: &[(&str, &str)]) -> Operation {
        Operation {
            id: "op".into(),
            fields: fields
                .iter()
                .map(|(n, t)| ((*n).into(), (*t).into()))
                .collect(),
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let err = check_body(br#"{"code":"a","code":"b"}"#, None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.to_string().contains("`code`"), "{err}");
        let err = check_body(br#"{"a":[{"x":1,"x":2}]}"#, None).unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
        assert!(check_body(br#"{"a":{"x":1},"b":{"x":2}}"#, None).is_ok());
        // Broken JSON is left to poem-openapi's own answer.
        assert!(check_body(b"{", None).is_ok());
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field() {
        let login = op(&[("code", "string")]);
        let err = check_body(br#"{"code":12345}"#, Some(&login)).unwrap_err();
        assert!(
            err.to_string().contains("field `code` must be a string"),
            "{err}"
        );
        assert!(!err.to_string().contains("12345"), "{err}");
        assert!(check_body(br#"{"code":"x"}"#, Some(&login)).is_ok());
        assert!(check_body(br#"{"code":null}"#, Some(&login)).is_ok());
        let profile = op(&[("gender", "integer")]);
        let err = check_body(br#"{"gender":"1"}"#, Some(&profile)).unwrap_err();
        assert!(
            err.to_string()
                .contains("field `gender` must be an integer"),
            "{err}"
        );
    }

    #[test]
    fn routes_match_templates_and_list_methods() {
        let spec = r#"{"paths":{
            "/admin/v1/users/{id}":{"get":{"operationId":"adminUser"}},
            "/api/v1/me":{"get":{"operationId":"me"},"delete":{"operationId":"eraseMe"}}}}"#;
        let routes = Routes::from_spec(spec, &[("/metrics", Method::GET, "metrics")]);
        assert_eq!(
            routes.allowed("/api/v1/me").as_deref(),
            Some("DELETE, GET, HEAD")
        );
        assert_eq!(
            routes.allowed("/admin/v1/users/42").as_deref(),
            Some("GET, HEAD")
        );
        assert_eq!(routes.allowed("/admin/v1/users/"), None);
        assert_eq!(routes.allowed("/nope"), None);
        assert_eq!(
            routes.label(&Method::GET, "/admin/v1/users/42"),
            "adminUser"
        );
        assert_eq!(routes.label(&Method::GET, "/metrics"), "metrics");
        assert_eq!(routes.label(&Method::POST, "/api/v1/me"), "unmatched");
    }
}
