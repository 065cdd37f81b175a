//! The catalog side of `[[models]]`: each model's catalog entry (its card's facts, the
//! operator's names, description, tags and plan on top, the size of its files) and its
//! deprecation, checked before any model loads: the formats the managed service's model API
//! allows, six months' notice of a retirement (three with a direct successor), and a successor
//! that is served here.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gateway_core::model_dir::{OnnxManifest, MANIFEST_FILE};
use gateway_core::{CatalogEntry, Deprecation, LifecycleState};
use serde::Deserialize;

use crate::config::{Config, ModelConfig, ModelSource};
use crate::metering::parse_time;

/// `[models.deprecation]`: a model's announced retirement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecationConfig {
    /// When the retirement was announced (a UTC date or RFC 3339 time).
    pub announced: String,
    /// When the model retires.
    pub retires: String,
    /// The model id that takes its requests after retirement.
    #[serde(default)]
    pub successor: Option<String>,
}

impl DeprecationConfig {
    fn parse(&self) -> anyhow::Result<Deprecation> {
        Ok(Deprecation {
            announced: parse_time(&self.announced).context("deprecation.announced")?,
            retires: parse_time(&self.retires).context("deprecation.retires")?,
            successor: self.successor.clone(),
        })
    }
}

/// One configured model's entry and whether it runs at start.
pub struct PlannedModel<'a> {
    /// Its configuration.
    pub config: &'a ModelConfig,
    /// Its catalog entry.
    pub entry: CatalogEntry,
    /// Whether it is retired at start (nothing loads; its requests go to its successor).
    pub retired: bool,
}

/// The catalog entries of every configured model, checked, in configuration order.
pub fn plan_models(config: &Config, now: DateTime<Utc>) -> anyhow::Result<Vec<PlannedModel<'_>>> {
    let planned = config
        .models
        .iter()
        .map(|model| {
            let entry = catalog_entry(config, model)?;
            let retired = entry.state_at(now) == LifecycleState::Retired;
            Ok(PlannedModel {
                config: model,
                entry,
                retired,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_lifecycles(&planned)?;
    Ok(planned)
}

/// The entry of `model`: its card (read from its directory, or an upstream model's own), with
/// the configuration on top.
fn catalog_entry(config: &Config, model: &ModelConfig) -> anyhow::Result<CatalogEntry> {
    let (card, size) = match model.source()? {
        ModelSource::Onnx(path) => {
            let dir = config.in_data_dir(path);
            (read_card(&dir)?, directory_size(&dir))
        }
        ModelSource::Upstream { id, upstream } => {
            (upstream.card(id, model.plan.unwrap_or_default()), 0)
        }
    };
    let id = model.id.clone().unwrap_or_else(|| card.id.clone());
    let mut entry = CatalogEntry::from_card(&id, &card, size);
    let text = |value: &Option<String>, default: &mut String| {
        if let Some(value) = value {
            default.clone_from(value);
        }
    };
    text(&model.displayed_name, &mut entry.displayed_name);
    text(&model.description, &mut entry.description);
    text(&model.hugging_face_name, &mut entry.hugging_face_name);
    text(&model.url, &mut entry.url);
    if let Some(tags) = &model.tags {
        entry.tags.clone_from(tags);
    }
    if let Some(plan) = model.plan {
        entry.plan = plan;
    }
    entry.deprecation = model
        .deprecation
        .as_ref()
        .map(DeprecationConfig::parse)
        .transpose()
        .with_context(|| format!("model {id}"))?;
    entry.check()?;
    Ok(entry)
}

/// The catalog card in `dir`'s `model-card.json`.
fn read_card(dir: &Path) -> anyhow::Result<gateway_core::ModelCard> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: OnnxManifest =
        serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    Ok(manifest.catalog_card())
}

/// Bytes of the files directly in `dir` (0 if it cannot be read).
fn directory_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Refuses announcements with too little notice, successors that are not served here or are
/// the model itself, and two models under one id.
fn check_lifecycles(planned: &[PlannedModel<'_>]) -> anyhow::Result<()> {
    let mut ids = BTreeSet::new();
    for model in planned {
        anyhow::ensure!(
            ids.insert(model.entry.id.as_str()),
            "two [[models]] are served as {}",
            model.entry.id
        );
    }
    for model in planned {
        let Some(deprecation) = &model.entry.deprecation else {
            continue;
        };
        deprecation.check_notice(&model.entry.id)?;
        if let Some(successor) = &deprecation.successor {
            let id = &model.entry.id;
            anyhow::ensure!(successor != id, "model {id} names itself as its successor");
            anyhow::ensure!(
                ids.contains(successor.as_str()),
                "model {id}: its successor {successor} is not a configured model"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn planned(id: &str, deprecation: Option<Deprecation>) -> PlannedModel<'static> {
        static CONFIG: std::sync::OnceLock<ModelConfig> = std::sync::OnceLock::new();
        let card = gateway_core::ModelCard {
            id: id.to_owned(),
            kind: gateway_core::ModelKind::Chat,
            plan: gateway_core::ServicePlan::Base,
            context_length: 8,
            dimensions: None,
            quantization: "q4".to_owned(),
            license: "MIT".to_owned(),
            source: String::new(),
        };
        let mut entry = CatalogEntry::from_card(id, &card, 1);
        entry.deprecation = deprecation;
        PlannedModel {
            config: CONFIG.get_or_init(ModelConfig::bundled_chat),
            entry,
            retired: false,
        }
    }

    fn deprecation(retires: &str, successor: Option<&str>) -> Option<Deprecation> {
        Some(Deprecation {
            announced: "2026-01-01T00:00:00Z".parse().unwrap(),
            retires: retires.parse().unwrap(),
            successor: successor.map(str::to_owned),
        })
    }

    #[test]
    fn notice_and_successors_are_checked_at_start() {
        let ok = [
            planned("old", deprecation("2026-04-01T00:00:00Z", Some("new"))),
            planned("new", None),
        ];
        assert!(check_lifecycles(&ok).is_ok());
        let short = [planned("old", deprecation("2026-06-30T00:00:00Z", None))];
        let error = check_lifecycles(&short).unwrap_err().to_string();
        assert!(
            error.contains("model old") && error.contains("6 months"),
            "{error}"
        );
        let missing = [planned(
            "old",
            deprecation("2026-09-01T00:00:00Z", Some("gone")),
        )];
        let error = check_lifecycles(&missing).unwrap_err().to_string();
        assert!(
            error.contains("successor gone is not a configured model"),
            "{error}"
        );
        let twice = [planned("a", None), planned("a", None)];
        assert!(check_lifecycles(&twice).is_err());
    }
}
