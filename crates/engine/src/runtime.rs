//! The ONNX Runtime library and its sessions: loading the shared library once per process,
//! choosing the execution provider, and opening a model file with the configured threads.

use std::path::{Path, PathBuf};

use gateway_core::ExecutionProvider;
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::EngineError;

/// How a model's session is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Execution provider.
    pub execution_provider: ExecutionProvider,
    /// The GPU's ordinal when the provider is CUDA.
    pub cuda_device_id: i32,
    /// ONNX Runtime intra-op threads (0 lets ONNX Runtime choose).
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin before they sleep. Spinning lowers the latency of
    /// back-to-back runs but takes CPU from the HTTP side of the same process.
    pub intra_op_spinning: bool,
}

impl Default for SessionConfig {
    /// The CPU, as many intra-op threads as ONNX Runtime chooses, spinning on.
    fn default() -> Self {
        Self {
            execution_provider: ExecutionProvider::Cpu,
            cuda_device_id: 0,
            intra_threads: 0,
            intra_op_spinning: true,
        }
    }
}

/// The loaded ONNX Runtime library. The library is process-wide: the first path loaded stays
/// loaded for the life of the process.
#[derive(Debug, Clone)]
pub struct OnnxRuntime {
    environment: Environment,
    library: PathBuf,
}

impl OnnxRuntime {
    /// Loads the ONNX Runtime shared library (`libonnxruntime.so`) from `library`, after
    /// checking that the file is a whole shared object for this process (a truncated one
    /// would kill the process in `dlopen`).
    pub fn load(library: &Path) -> Result<Self, EngineError> {
        let runtime_error = |message: String| EngineError::RuntimeLibrary {
            path: library.to_path_buf(),
            message,
        };
        crate::library_file::check(library).map_err(|error| runtime_error(error.to_string()))?;
        let environment = ort::init_from(library)
            .map_err(|error| runtime_error(error.to_string()))?
            .with_name("gateway")
            .build()
            .map_err(|error| runtime_error(error.to_string()))?;
        Ok(Self {
            environment,
            library: library.to_path_buf(),
        })
    }

    /// The path the library was loaded from.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Opens `model` with the execution provider and threads of `config`.
    pub(crate) fn open_session(
        &self,
        model: &Path,
        config: &SessionConfig,
    ) -> Result<Session, EngineError> {
        let mut builder = Session::builder(&self.environment)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?
            .with_intra_threads(config.intra_threads)
            .map_err(ort::Error::from)?
            .with_intra_op_spinning(config.intra_op_spinning)
            .map_err(ort::Error::from)?;
        if config.execution_provider == ExecutionProvider::Cuda {
            builder = with_cuda(builder, config.cuda_device_id)?;
        }
        builder
            .commit_from_file(model)
            .map_err(|error| EngineError::InvalidModel {
                path: model.to_path_buf(),
                message: error.to_string(),
            })
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    device_id: i32,
) -> Result<ort::session::builder::SessionBuilder, EngineError> {
    use ort::ep::ExecutionProvider;
    let unavailable = |reason: String| EngineError::DeviceUnavailable {
        provider: "cuda",
        reason,
    };
    match ort::ep::CUDA::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(unavailable(
                "the loaded ONNX Runtime library has no CUDA execution provider (install the GPU build, onnxruntime-gpu)".to_owned(),
            ))
        }
        Err(error) => return Err(unavailable(error.to_string())),
    }
    builder
        .with_execution_providers([ort::ep::CUDA::default()
            .with_device_id(device_id)
            .build()
            .error_on_failure()])
        .map_err(|error| unavailable(error.to_string()))
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _builder: ort::session::builder::SessionBuilder,
    _device_id: i32,
) -> Result<ort::session::builder::SessionBuilder, EngineError> {
    Err(EngineError::DeviceUnavailable {
        provider: "cuda",
        reason: "this gateway was built without the `cuda` feature".to_owned(),
    })
}
