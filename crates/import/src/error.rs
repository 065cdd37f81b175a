//! The importer's error type: one typed variant per way a checkpoint can fail to import.

use std::path::PathBuf;

/// Why a checkpoint could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the checkpoint could not be parsed.
    #[error("invalid JSON in {file}: {source}")]
    Json {
        /// The file concerned.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A file the import needs is not in the source directory.
    #[error("missing file {path}")]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// `config.json` lacks a field or has a value the importer cannot use.
    #[error("invalid config.json field `{field}`: {reason}")]
    InvalidConfig {
        /// The field concerned.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint's `model_type` is not one the importer converts.
    #[error("unsupported architecture: model_type `{model_type}`")]
    UnsupportedArchitecture {
        /// The `model_type` from `config.json`.
        model_type: String,
    },
    /// The checkpoint's activation function is not supported.
    #[error("unsupported activation `{hidden_act}` (supported: gelu)")]
    UnsupportedActivation {
        /// The `hidden_act` from `config.json`.
        hidden_act: String,
    },
    /// The sentence-transformers pooling mode is not supported.
    #[error("unsupported pooling mode `{mode}` (supported: mean, cls)")]
    UnsupportedPooling {
        /// The pooling mode found.
        mode: String,
    },
    /// The safetensors file is malformed.
    #[error("invalid safetensors file {path}: {reason}")]
    InvalidSafetensors {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("missing tensor `{name}`")]
    MissingTensor {
        /// The tensor name, without any `bert.`-style prefix.
        name: String,
    },
    /// A tensor is stored in a data type the importer does not convert.
    #[error("tensor `{name}` has unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDtype {
        /// The tensor name.
        name: String,
        /// The safetensors dtype, e.g. `I8`.
        dtype: String,
    },
    /// A tensor's shape disagrees with `config.json`.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor name.
        name: String,
        /// The shape `config.json` implies.
        expected: Vec<usize>,
        /// The shape stored in the checkpoint.
        found: Vec<usize>,
    },
    /// The GGUF file is malformed (bad magic, truncated, offsets past the end, …).
    #[error("invalid GGUF file {path}: {reason}")]
    InvalidGguf {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The GGUF file's format version is not one the reader knows (2 and 3).
    #[error("unsupported GGUF version {version} in {path} (supported: 2, 3)")]
    UnsupportedGgufVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// A GGUF metadata key the import needs is missing or has the wrong type.
    #[error("GGUF metadata `{key}`: {reason}")]
    GgufMetadata {
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A GGUF tensor is stored in a ggml type the importer does not convert.
    #[error(
        "tensor `{name}` has unsupported ggml type {ggml_type} \
         (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)"
    )]
    UnsupportedTensorType {
        /// The tensor name.
        name: String,
        /// The ggml type's name, e.g. `Q5_K`.
        ggml_type: String,
    },
    /// The GGUF tokenizer is of a kind the importer cannot rebuild.
    #[error("unsupported GGUF tokenizer: {what} (supported: tokenizer.ggml.model gpt2)")]
    UnsupportedTokenizer {
        /// The model or pre-tokenizer named, e.g. `tokenizer.ggml.pre = falcon`.
        what: String,
    },
    /// A size or count read from the source lies outside the range the importer accepts
    /// (an architecture limit, see `docs/model-format.md`).
    #[error("`{field}` is {value}, outside the accepted range {min}..={max}")]
    OutOfRange {
        /// The field or metadata key concerned.
        field: String,
        /// The value found.
        value: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A float read from the source (RoPE base, norm epsilon) is not finite and positive.
    #[error("`{field}` is {value}, expected a finite positive number")]
    NotPositiveFinite {
        /// The field or metadata key concerned.
        field: String,
        /// The value found.
        value: f64,
    },
    /// A length read from a file claims more bytes than the file has left.
    #[error(
        "invalid {format} file {path}: {what} claims {claimed} bytes, the file has {left} left"
    )]
    ExceedsFile {
        /// The file's format (`GGUF`, `safetensors`).
        format: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// What claimed the bytes (a metadata key, a tensor, a header).
        what: String,
        /// Bytes claimed (`u64::MAX` when the claim overflows).
        claimed: u64,
        /// Bytes the file has left.
        left: u64,
    },
    /// The chat template is empty or not UTF-8.
    #[error("invalid chat template: {reason}")]
    InvalidChatTemplate {
        /// What is wrong with it.
        reason: String,
    },
    /// The output path cannot take a model directory.
    #[error("invalid output {path}: {reason}")]
    InvalidOutput {
        /// The output path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ImportError {
    /// An [`ImportError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl super::graph::WriteError<ImportError> {
    /// The import error for a failed write of the graph file at `path`.
    pub(crate) fn into_import_error(self, path: &std::path::Path) -> ImportError {
        match self {
            Self::Io(source) => ImportError::Io {
                path: path.to_owned(),
                source,
            },
            Self::Fetch(error) => error,
            Self::WrongLength {
                name,
                expected,
                found,
            } => ImportError::ShapeMismatch {
                name,
                expected: vec![expected],
                found: vec![found],
            },
        }
    }
}
