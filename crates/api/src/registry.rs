//! The served models by the id clients send, with their catalog entries and lifecycle. A model
//! id is an alias for a backend: the operator repoints an id to another model directory
//! without clients changing. Resolving an id ([`ModelRegistry::permitted`]) follows the
//! lifecycle: a deprecated model is served with a [`Notice`] (its response headers), a retired
//! one by its successor (with a notice saying so) or not at all (410).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use gateway_auth::VerifiedKey;
use gateway_backend::{Backend, Health};
use gateway_core::{CatalogEntry, Deprecation, LifecycleState};

use crate::error::ApiError;

/// Successors followed from a retired model before giving up (a chain of retirements).
const MAX_SUCCESSION: usize = 4;

/// The header that names the retired model a request asked for, on answers of its successor.
pub const RETIRED_HEADER: &str = "x-model-retired";

/// One model the gateway serves.
#[derive(Clone)]
pub struct ServedModel {
    /// What runs the model.
    pub backend: Arc<dyn Backend>,
    /// What the catalog says about it (plan, names, lifecycle).
    pub entry: CatalogEntry,
    /// When the gateway started serving it (Unix seconds), shown as `created`.
    pub created: i64,
}

impl ServedModel {
    /// `backend` served as `entry` since `created` (Unix seconds).
    pub fn new(backend: Arc<dyn Backend>, entry: CatalogEntry, created: i64) -> Self {
        Self {
            backend,
            entry,
            created,
        }
    }

    /// `backend` under its card's id and facts (0 bytes of files), served since now.
    pub fn from_card(backend: Arc<dyn Backend>) -> Self {
        let card = backend.card();
        let entry = CatalogEntry::from_card(&card.id, card, 0);
        Self::new(backend, entry, Utc::now().timestamp())
    }
}

/// What the response to a request on a model in its lifecycle must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The model is deprecated: `Deprecation`, `Sunset` and `Link` headers.
    Deprecated(Deprecation),
    /// The model asked for (`requested`) is retired and its successor answered.
    Replaced {
        /// The retired model's id.
        requested: String,
    },
}

impl Notice {
    /// Writes the notice's headers: `Deprecation` (RFC 9745, `@` Unix seconds of the
    /// announcement), `Sunset` (RFC 8594, the retirement as an HTTP date) and `Link` to the
    /// announcements and the successor; or [`RETIRED_HEADER`] naming the retired model.
    pub fn write(&self, headers: &mut HeaderMap) {
        let values = match self {
            Self::Deprecated(deprecation) => deprecation_headers(deprecation),
            Self::Replaced { requested } => vec![(RETIRED_HEADER, requested.clone())],
        };
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

fn deprecation_headers(deprecation: &Deprecation) -> Vec<(&'static str, String)> {
    let mut links = vec!["</v1/announcements>; rel=\"deprecation\"".to_owned()];
    if let Some(successor) = &deprecation.successor {
        links.push(format!(
            "</v1/models/{successor}>; rel=\"successor-version\""
        ));
    }
    vec![
        (
            "deprecation",
            format!("@{}", deprecation.announced.timestamp()),
        ),
        ("sunset", http_date(deprecation.retires)),
        ("link", links.join(", ")),
    ]
}

/// `time` as an HTTP date (IMF-fixdate), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(time: DateTime<Utc>) -> String {
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A model id resolved for a request: the model that answers it, under which id, and what its
/// response must say about the lifecycle.
pub struct Resolved<'a> {
    /// The model that answers.
    pub model: &'a ServedModel,
    /// Its id (the successor's when the model asked for is retired).
    pub id: &'a str,
    /// What the response must say.
    pub notice: Option<Notice>,
}

impl Deref for Resolved<'_> {
    type Target = ServedModel;

    fn deref(&self) -> &ServedModel {
        self.model
    }
}

/// The served models, and the catalog entries of retired ones that no longer run, by id.
#[derive(Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, ServedModel>,
    retired: BTreeMap<String, CatalogEntry>,
}

impl ModelRegistry {
    /// Serves `model` under `id`, replacing any model of the same id.
    pub fn insert(&mut self, id: impl Into<String>, model: ServedModel) {
        self.models.insert(id.into(), model);
    }

    /// Keeps the catalog entry of a model that retired before the server started (nothing
    /// runs it; its requests go to its successor or get 410).
    pub fn insert_retired(&mut self, entry: CatalogEntry) {
        self.retired.insert(entry.id.clone(), entry);
    }

    /// The model with this id if `key` may use it, resolved through its lifecycle now. A model
    /// the key may not use gets the same 404 as an unknown one, so a restricted key does not
    /// learn which models exist.
    pub fn permitted(&self, id: &str, key: &VerifiedKey) -> Result<Resolved<'_>, ApiError> {
        self.permitted_at(id, key, Utc::now())
    }

    /// [`Self::permitted`] at `now`.
    pub fn permitted_at(
        &self,
        id: &str,
        key: &VerifiedKey,
        now: DateTime<Utc>,
    ) -> Result<Resolved<'_>, ApiError> {
        if !key.allows_model(id) {
            return Err(not_found(id));
        }
        self.resolve(id, now, 0)
    }

    fn resolve(
        &self,
        id: &str,
        now: DateTime<Utc>,
        depth: usize,
    ) -> Result<Resolved<'_>, ApiError> {
        let entry = self.entry(id).ok_or_else(|| not_found(id))?;
        match (entry.state_at(now), &entry.deprecation) {
            (LifecycleState::Retired, Some(deprecation)) => {
                let Some(successor) = deprecation
                    .successor
                    .as_deref()
                    .filter(|_| depth < MAX_SUCCESSION)
                else {
                    return Err(ApiError::ModelRetired {
                        model: id.to_owned(),
                        retired: deprecation.retires,
                    });
                };
                let mut resolved = self.resolve(successor, now, depth + 1)?;
                resolved.notice = Some(Notice::Replaced {
                    requested: id.to_owned(),
                });
                Ok(resolved)
            }
            (state, deprecation) => {
                let (id, model) = self.models.get_key_value(id).ok_or_else(|| not_found(id))?;
                let notice = deprecation
                    .clone()
                    .filter(|_| state == LifecycleState::Deprecated)
                    .map(Notice::Deprecated);
                Ok(Resolved { model, id, notice })
            }
        }
    }

    /// The model served as `id`, if one runs under it.
    pub fn served(&self, id: &str) -> Option<&ServedModel> {
        self.models.get(id)
    }

    /// The catalog entry of `id`, served or retired.
    pub fn entry(&self, id: &str) -> Option<&CatalogEntry> {
        self.models
            .get(id)
            .map(|model| &model.entry)
            .or_else(|| self.retired.get(id))
    }

    /// Every catalog entry, served or retired, sorted by id.
    pub fn entries(&self) -> Vec<&CatalogEntry> {
        let mut entries: Vec<&CatalogEntry> = self
            .models
            .values()
            .map(|model| &model.entry)
            .chain(self.retired.values())
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries
    }

    /// Every served model with its id, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ServedModel)> {
        self.models.iter().map(|(id, model)| (id.as_str(), model))
    }

    /// Whether every model can take requests.
    pub fn all_ready(&self) -> bool {
        self.models
            .values()
            .all(|model| model.backend.health() == Health::Ready)
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::ModelNotFound {
        model: id.to_owned(),
    }
}
