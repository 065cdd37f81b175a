//! What the output of a generation must look like ([`OutputConstraint`]): any JSON object, JSON
//! following a schema, text matching a regular expression, or one of a list of strings. A
//! backend that offers it ([`crate::Capabilities::constrained_output`]) never lets a choice
//! produce a token that cannot continue a valid output.

/// A constraint on every choice's output.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputConstraint {
    /// Any JSON object (`response_format` `json_object`).
    JsonObject,
    /// JSON that follows this JSON Schema (`json_schema`, `guided_json`, a tool's arguments).
    JsonSchema(serde_json::Value),
    /// Text that this regular expression matches as a whole (`guided_regex`).
    Regex(String),
    /// Exactly one of these strings (`guided_choice`).
    Choice(Vec<String>),
}

impl OutputConstraint {
    /// What the constraint is, for messages and logs (never the schema or pattern itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JsonObject => "a JSON object",
            Self::JsonSchema(_) => "a JSON schema",
            Self::Regex(_) => "a regular expression",
            Self::Choice(_) => "a list of choices",
        }
    }
}
