//! The OpenAPI document at `/openapi.json`, checked against the router that serves it: every
//! route the router registers is in the document with exactly its methods (read from the
//! router itself), every operation's security matches what the authentication layer really
//! asks of its path, and every schema the document refers to is among its components.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;

use support::app::{app, hello, App};

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &App) -> Value {
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let answer = app.call(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers["content-type"], "application/json");
    answer.json()
}

/// The routes the router registers, path template → methods (upper case, without the `HEAD`
/// that every `GET` route answers too), read from the router's `Debug` output: its path
/// table maps route ids to paths, and each route's method router names its `Allow` header.
fn registered_routes(router: &Router) -> BTreeMap<String, BTreeSet<String>> {
    let text = format!("{router:?}");
    let start = text
        .find("path_router:")
        .expect("the router shows its path router");
    let end = text
        .find("fallback_router:")
        .expect("the router shows its fallback");
    let mut paths = BTreeMap::new();
    let mut methods = BTreeMap::new();
    for piece in text[start..end].split("RouteId(").skip(1) {
        let (id, rest) = piece.split_once(')').expect("a route id");
        let id: u32 = id.trim().parse().expect("a numeric route id");
        if let Some(path) = rest.strip_prefix(": \"") {
            let path = path.split('"').next().expect("a quoted path");
            paths.insert(id, path.to_owned());
        } else if let Some((_, allow)) = rest.split_once("allow_header: Bytes(b\"") {
            let allow = allow.split('"').next().expect("a quoted Allow header");
            let set: BTreeSet<String> = allow
                .split(',')
                .filter(|method| *method != "HEAD")
                .map(str::to_owned)
                .collect();
            methods.insert(id, set);
        }
    }
    assert!(!paths.is_empty(), "no path read from {text}");
    paths
        .into_iter()
        .map(|(id, path)| {
            let set = methods.remove(&id).unwrap_or_else(|| {
                panic!("no methods read for {path}");
            });
            (path, set)
        })
        .collect()
}

/// The document's operations, path → method (upper case) → operation.
fn operations(document: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let ops = METHODS
                .iter()
                .filter_map(|method| {
                    let op = item.get(*method)?;
                    Some((method.to_uppercase(), op.clone()))
                })
                .collect();
            (path.clone(), ops)
        })
        .collect()
}

/// `path` with its parameters filled in: real ids where the route needs one to be found.
fn concrete(path: &str) -> String {
    path.replace("{projectId}", &uuid::Uuid::new_v4().to_string())
        .replace("{tokenId}", &uuid::Uuid::new_v4().to_string())
        .replace("{regionId}", "eu01")
        .replace("{modelId}", "scripted")
        .replace("{model}", "scripted")
}

async fn status_of(app: &App, method: &str, path: &str, credential: Option<&str>) -> StatusCode {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = Request::builder().method(method).uri(concrete(path));
    if let Some(credential) = credential {
        request = request.header("authorization", format!("Bearer {credential}"));
    }
    let body = Body::from("{}");
    app.call(request.body(body).unwrap()).await.status
}

/// Whether a management request was refused for want of a management token: 401, or 429
/// once the test's address has spent its failed authentications.
fn refused(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS
}

#[tokio::test]
async fn the_document_is_public_openapi_3_1_json() {
    let app = app(vec![hello()]).await;
    let document = document(&app).await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        document["openapi"]
    );
    assert_eq!(document["info"]["title"], "gateway");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(document.get("servers").is_none());
    assert!(gateway_api::PUBLIC_PATHS.contains(&"/openapi.json"));
}

#[tokio::test]
async fn every_route_of_the_router_is_documented_with_its_methods() {
    let app = app(vec![hello()]).await;
    let routes = registered_routes(&app.router);
    let documented = operations(&document(&app).await);
    assert!(routes.len() >= 20, "{routes:?}");
    for (path, methods) in &routes {
        let ops = documented
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        let documented_methods: BTreeSet<String> = ops.keys().cloned().collect();
        assert_eq!(&documented_methods, methods, "the methods of {path}");
    }
    for path in documented.keys() {
        assert!(
            routes.contains_key(path),
            "{path} is documented but not routed"
        );
    }
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models/{model}",
        "/v1/projects/{projectId}/regions/{regionId}/tokens/{tokenId}",
        "/v1/projects/{projectId}/usage",
        "/v1/regions/{regionId}/chat/models/{modelId}",
        "/openapi.json",
    ] {
        assert!(documented.contains_key(path), "{path}");
    }
}

#[tokio::test]
async fn each_operation_names_the_credential_its_path_needs() {
    let app = app(vec![hello()]).await;
    let document = document(&app).await;
    let schemes = &document["components"]["securitySchemes"];
    for scheme in ["api_key", "management_token"] {
        assert_eq!(schemes[scheme]["type"], "http", "{scheme}");
        assert_eq!(schemes[scheme]["scheme"], "bearer", "{scheme}");
    }
    for (path, ops) in operations(&document) {
        for (method, op) in ops {
            let scheme = op["security"]
                .as_array()
                .map(|requirements| {
                    assert_eq!(requirements.len(), 1, "{method} {path}");
                    let names: Vec<&String> = requirements[0].as_object().unwrap().keys().collect();
                    assert_eq!(names.len(), 1, "{method} {path}");
                    names[0].clone()
                })
                .unwrap_or_default();
            let anonymous = status_of(&app, &method, &path, None).await;
            let with_key = status_of(&app, &method, &path, Some(&app.key)).await;
            match scheme.as_str() {
                "" => {
                    assert_ne!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}");
                }
                "api_key" => {
                    assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}");
                    assert_ne!(with_key, StatusCode::UNAUTHORIZED, "{method} {path}");
                }
                "management_token" => {
                    assert!(refused(anonymous), "{method} {path}: {anonymous}");
                    assert!(refused(with_key), "{method} {path}: {with_key}");
                }
                other => panic!("{method} {path} names an unknown scheme {other}"),
            }
        }
    }
}

/// Every `$ref` under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn request_bodies_and_every_reference_are_components() {
    let app = app(vec![hello()]).await;
    let document = document(&app).await;
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut targets = Vec::new();
    refs(&document, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a component schema"));
        assert!(schemas.contains_key(name), "{target} is missing");
    }
    let mut bodies = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (path, ops) in operations(&document) {
        for (method, op) in ops {
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "operation id {id} twice");
            let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            if let Some(body) = body.as_str() {
                bodies.insert(format!("{method} {path}"), body.to_owned());
            }
        }
    }
    let expected = [
        ("POST /v1/chat/completions", "ChatCompletionRequest"),
        ("POST /v1/completions", "CompletionRequest"),
        ("POST /v1/responses", "ResponseRequest"),
        ("POST /v1/embeddings", "EmbeddingRequest"),
        ("POST /v1/tokenize", "TokenizeRequest"),
        ("POST /v1/detokenize", "DetokenizeRequest"),
        ("POST /tokenize", "TokenizeRequest"),
        ("POST /detokenize", "DetokenizeRequest"),
        (
            "POST /v1/projects/{projectId}/regions/{regionId}/tokens",
            "CreateToken",
        ),
        (
            "PATCH /v1/projects/{projectId}/regions/{regionId}/tokens/{tokenId}",
            "UpdateToken",
        ),
    ];
    for (operation, schema) in expected {
        assert_eq!(
            bodies.get(operation).map(String::as_str),
            Some(format!("#/components/schemas/{schema}").as_str()),
            "{operation}"
        );
    }
    assert_eq!(bodies.len(), expected.len(), "{bodies:?}");
    for schema in ["ErrorBody", "ManagementErrorBody", "AuditPage", "Token"] {
        assert!(schemas.contains_key(schema), "{schema}");
    }
}
