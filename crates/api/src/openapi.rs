//! The OpenAPI 3.1 document of the whole HTTP API, generated from the code: the wire types
//! derive `utoipa::ToSchema`, every handler carries a `#[utoipa::path]` attribute, and
//! [`ApiDoc`] gathers them with the error answers of each API and the two bearer credentials
//! (a model API key on the model API, a management token on the management API; the health,
//! catalog and announcement routes need none). `GET /openapi.json` answers the document,
//! serialized once.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gateway_core::openai::ErrorBody;
use utoipa::openapi::response::{Response as ResponseObject, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::error::{ApiError, ManagementErrorBody};
use crate::routes;

/// The security scheme of the model API: a model API key (`sk-…`) as a bearer token.
pub const API_KEY: &str = "api_key";
/// The security scheme of the management API: a management token (`gmt-…`) as a bearer token.
pub const MANAGEMENT_TOKEN: &str = "management_token";

/// The OpenAPI document of the gateway's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gateway",
        description = "An OpenAI-compatible model-serving gateway: the model API (chat, \
                       completions, embeddings, models, tokenization), the token management, \
                       audit-log and usage API of a project, the public model catalog and \
                       announcements, and the operational routes."
    ),
    paths(
        routes::chat::create_chat_completion,
        routes::completions::create_completion,
        routes::responses::create_response,
        routes::embeddings::create_embeddings,
        routes::tokenize::tokenize,
        routes::tokenize::detokenize,
        routes::tokenize::tokenize_at_root,
        routes::tokenize::detokenize_at_root,
        routes::models::list_models,
        routes::models::get_model,
        routes::tokens::create_token,
        routes::tokens::list_tokens,
        routes::tokens::get_token,
        routes::tokens::update_token,
        routes::tokens::delete_token,
        routes::audit::audit_log,
        routes::audit::export_audit_log,
        routes::usage::usage,
        routes::projects::list_projects,
        routes::projects::limits,
        routes::catalog::list_models,
        routes::catalog::get_chat_model,
        routes::catalog::get_embedding_model,
        routes::catalog::announcements,
        routes::health::healthz,
        routes::health::health,
        routes::health::version,
        routes::health::readyz,
        routes::health::metrics,
        openapi_json,
        crate::console::page,
        crate::console::page_with_slash,
        crate::console::asset,
        crate::console::view_asset,
    ),
    components(schemas(ErrorBody, ManagementErrorBody)),
    modifiers(&Credentials),
    tags(
        (name = "model", description = "The OpenAI-compatible model API (a model API key)."),
        (name = "management", description = "A project's tokens, audit log and usage (a \
                                              management token)."),
        (name = "catalog", description = "The public model catalog and its announcements."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "console", description = "The web console's page and files (no credential; \
                                           it calls the management API with the principal's \
                                           token)."),
    )
)]
pub struct ApiDoc;

/// Adds the two bearer credentials to the document's security schemes.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            API_KEY,
            bearer("A model API key of a project, `Authorization: Bearer sk-…`."),
        );
        components.add_security_scheme(
            MANAGEMENT_TOKEN,
            bearer("A management token of a principal, `Authorization: Bearer gmt-…`."),
        );
    }
}

/// What an error status means, for the document.
fn meaning(status: u16) -> &'static str {
    match status {
        400 => {
            "Invalid request: malformed JSON, a wrong type or a value out of range (the \
                error names the parameter)."
        }
        401 => "Missing or invalid credential.",
        403 => "The principal's role does not allow the change.",
        404 => "Unknown model, project, token or path, or one the credential may not use.",
        408 => "The request body paused longer than the server's limit.",
        409 => "The object already exists, or a label patch kept racing others.",
        410 => "The model was retired and has no successor.",
        413 => "The body is larger than the server's limit.",
        429 => {
            "Over a budget of the project (requests, tokens, requests in flight) or too \
                many failed authentications; see `Retry-After`."
        }
        500 => "A fault of the server: the message names only the request id.",
        503 => {
            "The model is busy or unavailable, or the server is shutting down; see \
                `Retry-After`."
        }
        504 => "The request took longer than the server's limit.",
        _ => "Error.",
    }
}

/// The error answers with `statuses`, each a JSON body of the schema `B`.
fn error_responses<B: ToSchema>(statuses: &[u16]) -> BTreeMap<String, RefOr<ResponseObject>> {
    statuses
        .iter()
        .map(|&status| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(B::name())))
                .build();
            let response = ResponseBuilder::new()
                .description(meaning(status))
                .content("application/json", content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// Declares a set of error answers for the `responses(...)` of route annotations.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident: $body:ty => [$($status:literal),* $(,)?]) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<ResponseObject>> {
                error_responses::<$body>(&[$($status),*])
            }
        }
    };
}

error_set!(
    /// The errors of a model route that runs a model (OpenAI's error body).
    ModelErrors: ErrorBody => [400, 401, 404, 408, 410, 413, 429, 500, 503, 504]
);
error_set!(
    /// The errors of a model route that only reads the catalog (OpenAI's error body).
    ModelReadErrors: ErrorBody => [401, 404, 500, 504]
);
error_set!(
    /// The errors of a management route that reads (the management API's error body).
    ManagementReadErrors: ManagementErrorBody => [400, 401, 404, 429, 500, 504]
);
error_set!(
    /// The errors of a management route that changes a token (the management API's error body).
    ManagementWriteErrors: ManagementErrorBody =>
        [400, 401, 403, 404, 408, 409, 413, 429, 500, 504]
);
error_set!(
    /// The errors of a public catalog route (the management API's error body).
    CatalogErrors: ManagementErrorBody => [404, 500, 504]
);

/// The document as JSON, serialized once.
static DOCUMENT: LazyLock<Result<Bytes, serde_json::Error>> =
    LazyLock::new(|| serde_json::to_vec(&ApiDoc::openapi()).map(Bytes::from));

/// Handles `GET /openapi.json`: this API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.",
         content_type = "application/json", body = Object),
        (status = 500, description = "A fault of the server.", body = ErrorBody),
    )
)]
pub async fn openapi_json() -> Result<Response, ApiError> {
    match &*DOCUMENT {
        Ok(document) => Ok((
            [(header::CONTENT_TYPE, "application/json")],
            document.clone(),
        )
            .into_response()),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document cannot be serialized");
            Err(ApiError::Internal("the OpenAPI document"))
        }
    }
}
