//! `GET /v1/models` and `GET /v1/models/{id}`: the model object and the list envelope.

use serde::{Deserialize, Serialize};

use super::ObjectType;

/// A model as `/v1/models` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Model {
    /// The model id used in requests.
    pub id: String,
    /// Always `model`.
    pub object: ObjectType,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// The organization that owns it.
    pub owned_by: String,
    /// Further fields (catalog information added by the gateway, or fields of an upstream
    /// server), serialized beside the standard ones.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Model {
    /// A model object with no extra fields.
    pub fn new(id: impl Into<String>, created: i64, owned_by: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            object: ObjectType::Model,
            created,
            owned_by: owned_by.into(),
            extra: serde_json::Map::new(),
        }
    }
}

/// The answer of `GET /v1/models`: `{"object": "list", "data": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: ObjectType,
    /// The models.
    pub data: Vec<Model>,
}

impl ModelList {
    /// A list of the given models.
    pub fn new(data: Vec<Model>) -> Self {
        Self {
            object: ObjectType::List,
            data,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_shape() {
        let list = ModelList::new(vec![Model::new(
            "model-id-0",
            1686935002,
            "organization-owner",
        )]);
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!({"object": "list", "data": [{
                "id": "model-id-0", "object": "model", "created": 1686935002,
                "owned_by": "organization-owner"
            }]})
        );
    }

    #[test]
    fn extra_fields_round_trip() {
        let value = json!({
            "id": "m", "object": "model", "created": 1, "owned_by": "vllm",
            "max_model_len": 8192, "root": "org/m"
        });
        let model: Model = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(model.extra.get("max_model_len"), Some(&json!(8192)));
        assert_eq!(serde_json::to_value(&model).unwrap(), value);
    }
}
