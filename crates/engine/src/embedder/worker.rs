//! The thread that owns an encoder's ONNX Runtime session. Requests arrive over a bounded
//! channel; the worker takes every request waiting, plans padded batches within the token
//! budget, runs them, pools the token vectors and answers each request on its own channel.

use std::borrow::Cow;
use std::sync::Arc;

use gateway_core::model_dir::Pooling;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use tokio::sync::{mpsc, oneshot};

use super::batch_plan::plan_batches;
use super::encode::Sequence;
use super::pooling::HiddenStates;
use crate::EngineError;

/// The answer to one request: its vectors in input order, or why it failed.
pub(crate) type JobResult = Result<Vec<Vec<f32>>, EngineError>;

/// One request's sequences and the channel its answer goes to.
pub(crate) struct Job {
    pub(crate) sequences: Vec<Sequence>,
    pub(crate) reply: oneshot::Sender<JobResult>,
}

/// What the worker needs to know about its model.
pub(crate) struct WorkerModel {
    pub(crate) session: Session,
    pub(crate) output: String,
    pub(crate) takes_token_types: bool,
    pub(crate) hidden: usize,
    pub(crate) pooling: Pooling,
    pub(crate) normalize: bool,
    pub(crate) max_batch_tokens: usize,
}

/// Serves jobs until every sender is gone.
pub(crate) fn run_worker(mut model: WorkerModel, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut waiting = vec![first];
        while let Ok(job) = jobs.try_recv() {
            waiting.push(job);
        }
        waiting.retain(|job| !job.reply.is_closed());
        serve(&mut model, waiting);
    }
}

/// Runs every sequence of `jobs` in planned batches and answers each job.
fn serve(model: &mut WorkerModel, jobs: Vec<Job>) {
    let owners: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(job, entry)| (0..entry.sequences.len()).map(move |item| (job, item)))
        .collect();
    let lengths: Vec<usize> = owners
        .iter()
        .map(|&(job, item)| jobs[job].sequences[item].len())
        .collect();
    let mut vectors: Vec<Vec<Option<Vec<f32>>>> = jobs
        .iter()
        .map(|job| vec![None; job.sequences.len()])
        .collect();
    let mut failure: Option<Arc<ort::Error>> = None;
    for batch in plan_batches(&lengths, model.max_batch_tokens) {
        let sequences: Vec<&Sequence> = batch
            .iter()
            .map(|&flat| {
                let (job, item) = owners[flat];
                &jobs[job].sequences[item]
            })
            .collect();
        match run_batch(model, &sequences) {
            Ok(pooled) => {
                for (&flat, vector) in batch.iter().zip(pooled) {
                    let (job, item) = owners[flat];
                    vectors[job][item] = Some(vector);
                }
            }
            Err(BatchError::Runtime(error)) => failure = Some(Arc::new(error)),
            Err(BatchError::Shape(message)) => {
                tracing::error!(%message, "encoder output has an unexpected shape");
            }
        }
    }
    for (job, slots) in jobs.into_iter().zip(vectors) {
        let answer = slots
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| match &failure {
                Some(error) => EngineError::Inference(Arc::clone(error)),
                None => EngineError::OutputShape("the encoder returned no vector".to_owned()),
            });
        // A closed channel means the client went away; there is nobody left to tell.
        let _ = job.reply.send(answer);
    }
}

enum BatchError {
    Runtime(ort::Error),
    Shape(String),
}

impl From<ort::Error> for BatchError {
    fn from(error: ort::Error) -> Self {
        Self::Runtime(error)
    }
}

/// Pads `sequences` to a common width, runs the session and pools each row.
fn run_batch(
    model: &mut WorkerModel,
    sequences: &[&Sequence],
) -> Result<Vec<Vec<f32>>, BatchError> {
    let rows = sequences.len();
    let width = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = vec![0i64; rows * width];
    let mut mask = vec![0i64; rows * width];
    let mut types = vec![0i64; rows * width];
    for (row, sequence) in sequences.iter().enumerate() {
        let start = row * width;
        ids[start..start + sequence.len()].copy_from_slice(&sequence.ids);
        types[start..start + sequence.len()].copy_from_slice(&sequence.type_ids);
        mask[start..start + sequence.len()].fill(1);
    }
    let shape = [rows, width];
    let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
        ("input_ids".into(), Tensor::from_array((shape, ids))?.into()),
        (
            "attention_mask".into(),
            Tensor::from_array((shape, mask))?.into(),
        ),
    ];
    if model.takes_token_types {
        inputs.push((
            "token_type_ids".into(),
            Tensor::from_array((shape, types))?.into(),
        ));
    }
    let hidden = model.hidden;
    let outputs = model.session.run(inputs)?;
    let value = outputs
        .get(&model.output)
        .ok_or_else(|| BatchError::Shape(format!("no output named {}", model.output)))?;
    let (dims, data) = value.try_extract_tensor::<f32>()?;
    let expected = [rows as i64, width as i64, hidden as i64];
    if dims[..] != expected[..] {
        return Err(BatchError::Shape(format!(
            "output shape {dims:?}, expected {expected:?}"
        )));
    }
    let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
    let states = HiddenStates {
        data,
        width,
        hidden,
    };
    Ok(states.pool(&lengths, model.pooling, model.normalize))
}
