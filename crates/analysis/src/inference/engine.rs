//! The inference worker: one OS thread that owns the loaded members, fed through a bounded queue.
//!
//! Why a dedicated thread: libtorch's grad mode is thread-local and `Tensor` is not `Sync`, so the
//! members live on the thread that runs them; the web workers never block on a forward pass. Jobs
//! that queue up while a forward pass runs are batched into the next one. A full queue answers
//! [`InferenceError::Overloaded`] at once instead of waiting.

use std::{path::Path, sync::Arc, thread};

use tch::{CModule, Device, Kind, Tensor};
use tokio::sync::{mpsc, oneshot};

use super::{
    device::device_name,
    manifest::{Manifest, ManifestError},
};

/// Largest number of queued studies run in one forward pass.
const MAX_BATCH: usize = 8;

/// One study's model-ready input: `channels × depth × height × width` float32, C order, plus the
/// statistics the out-of-distribution check needs.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub data: Vec<f32>,
    pub lesion_volume_ml: f64,
    pub t1c_lesion_mean: f64,
}

/// What the ensemble says about one study. Probabilities are P(primary CNS lymphoma).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EnsembleOutput {
    pub member_probabilities: Vec<f64>,
    pub mean_probability: f64,
    /// Largest minus smallest member probability.
    pub spread: f64,
    pub calibrated_probability: f64,
    /// Why the ensemble declines to give a result, when it does.
    pub abstain_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot load model member {file}: {reason}")]
    Load { file: String, reason: String },
    #[error("input has {got} values; the model expects {expected} (2 × {shape:?})")]
    InputShape { got: usize, expected: usize, shape: [usize; 3] },
    #[error("the inference queue is full")]
    Overloaded,
    #[error("the inference worker has stopped")]
    WorkerGone,
    #[error("forward pass failed: {0}")]
    Forward(String),
}

struct Job {
    input: ModelInput,
    reply: oneshot::Sender<Result<Vec<f64>, InferenceError>>,
    queued_at: std::time::Instant,
}

/// One forward pass of every member over a batch, as the worker saw it.
#[derive(Debug, Clone)]
pub struct ForwardPass {
    /// Studies in the batch.
    pub studies: usize,
    /// How long the pass took.
    pub duration: std::time::Duration,
    /// How long each study waited in the queue before its pass began.
    pub waits: Vec<std::time::Duration>,
}

/// Told of every forward pass (the service's metrics).
pub type BatchObserver = Box<dyn Fn(&ForwardPass) + Send + Sync>;

/// Handle on the inference worker. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    queue: mpsc::Sender<Job>,
    observer: Arc<std::sync::OnceLock<BatchObserver>>,
    manifest: Arc<Manifest>,
    device: Device,
    max_member_spread: f64,
}

impl Engine {
    /// Loads and verifies every member (a hash mismatch refuses to start), moves them to
    /// `device`, warms them up, and starts the worker thread.
    pub fn start(manifest_path: &Path, device: Device, queue_capacity: usize, threads: usize, max_member_spread: Option<f64>) -> Result<Engine, InferenceError> {
        let manifest = Manifest::load(manifest_path)?;
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let files = manifest.verified_member_paths(dir)?;
        let threads = if threads == 0 { (available_cores() / 2).max(1) } else { threads };
        tch::set_num_threads(threads as i32);
        // libtorch allows this once per process, before any parallel work (tch unwraps the
        // error): a second engine in the same process (tests) must not try again.
        static INTEROP: std::sync::Once = std::sync::Once::new();
        INTEROP.call_once(|| tch::set_num_interop_threads(1));
        let members = files
            .iter()
            .map(|f| {
                let mut m = CModule::load_on_device(f, device).map_err(|e| InferenceError::Load { file: f.display().to_string(), reason: e.to_string() })?;
                m.set_eval();
                Ok(m)
            })
            .collect::<Result<Vec<_>, InferenceError>>()?;
        let shape = manifest.input.shape;
        let (tx, rx) = mpsc::channel::<Job>(queue_capacity);
        let observer: Arc<std::sync::OnceLock<BatchObserver>> = Arc::default();
        let told = observer.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        thread::Builder::new()
            .name("neurocds-inference".into())
            .spawn(move || {
                let _guard = tch::no_grad_guard();
                // Warm-up: the first forward pass allocates and (on CUDA) autotunes.
                let warm = Tensor::zeros([1, 2, shape[0] as i64, shape[1] as i64, shape[2] as i64], (Kind::Float, device));
                let warm_result = members.iter().try_for_each(|m| m.forward_ts(&[&warm]).map(|_| ()));
                let _ = ready_tx.send(warm_result.map_err(|e| e.to_string()));
                worker(members, rx, device, shape, &told)
            })
            .map_err(|e| InferenceError::Load { file: "<worker>".into(), reason: e.to_string() })?;
        ready_rx
            .recv()
            .map_err(|_| InferenceError::WorkerGone)?
            .map_err(|reason| InferenceError::Load { file: manifest_path.display().to_string(), reason: format!("warm-up forward pass failed: {reason}") })?;
        tracing::info!(model = %manifest.name, version = %manifest.version, members = manifest.members.len(), device = %device_name(device), threads, "ensemble loaded");
        Ok(Engine { queue: tx, observer, max_member_spread: max_member_spread.unwrap_or(manifest.max_member_spread), manifest: Arc::new(manifest), device })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Has `observer` told of every forward pass from now on (the service's metrics). The first
    /// observer stays; later ones are ignored.
    pub fn observe_batches(&self, observer: BatchObserver) {
        let _ = self.observer.set(observer);
    }

    /// Studies waiting in the queue now, and the most it holds.
    pub fn queue(&self) -> (usize, usize) {
        let max = self.queue.max_capacity();
        (max.saturating_sub(self.queue.capacity()), max)
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs the ensemble on one study. Never waits for room in the queue.
    pub async fn predict(&self, input: ModelInput) -> Result<EnsembleOutput, InferenceError> {
        let [d, h, w] = self.manifest.input.shape;
        let expected = 2 * d * h * w;
        if input.data.len() != expected {
            return Err(InferenceError::InputShape { got: input.data.len(), expected, shape: self.manifest.input.shape });
        }
        let ood = self.out_of_distribution(&input);
        let (reply, rx) = oneshot::channel();
        self.queue.try_send(Job { input, reply, queued_at: std::time::Instant::now() }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InferenceError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => InferenceError::WorkerGone,
        })?;
        let members = rx.await.map_err(|_| InferenceError::WorkerGone)??;
        Ok(self.summarise(members, ood))
    }

    fn out_of_distribution(&self, input: &ModelInput) -> Option<String> {
        out_of_distribution(&self.manifest, input)
    }

    fn summarise(&self, members: Vec<f64>, ood: Option<String>) -> EnsembleOutput {
        summarise(members, &self.manifest, self.max_member_spread, ood)
    }
}

/// Why `input` lies outside the ranges seen in training (the manifest's `ood` bounds), if it
/// does. Shared by the engine and `evaluate`.
pub fn out_of_distribution(manifest: &Manifest, input: &ModelInput) -> Option<String> {
    let b = manifest.ood.as_ref()?;
    let outside = |v: f64, [lo, hi]: [f64; 2]| !(lo..=hi).contains(&v);
    if outside(input.lesion_volume_ml, b.lesion_volume_ml) {
        return Some(format!(
            "lesion volume {:.1} mL lies outside the training range {:.1}–{:.1} mL",
            input.lesion_volume_ml, b.lesion_volume_ml[0], b.lesion_volume_ml[1]
        ));
    }
    if outside(input.t1c_lesion_mean, b.t1c_lesion_mean) {
        return Some(format!(
            "lesion enhancement {:.2} lies outside the training range {:.2}–{:.2}",
            input.t1c_lesion_mean, b.t1c_lesion_mean[0], b.t1c_lesion_mean[1]
        ));
    }
    None
}

/// Mean, spread, calibration and the abstention rule, shared by the engine and `evaluate`.
pub fn summarise(members: Vec<f64>, manifest: &Manifest, max_member_spread: f64, ood: Option<String>) -> EnsembleOutput {
    let n = members.len().max(1) as f64;
    let mean = members.iter().sum::<f64>() / n;
    let lo = members.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = members.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let spread = if members.is_empty() { 0.0 } else { hi - lo };
    let abstain_reason = ood.or_else(|| {
        (spread > max_member_spread).then(|| format!("ensemble members disagree (spread {spread:.2} > {max_member_spread:.2})"))
    });
    EnsembleOutput { calibrated_probability: manifest.calibration.apply(mean), member_probabilities: members, mean_probability: mean, spread, abstain_reason }
}

fn available_cores() -> usize {
    thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn worker(members: Vec<CModule>, mut rx: mpsc::Receiver<Job>, device: Device, shape: [usize; 3], observer: &std::sync::OnceLock<BatchObserver>) {
    let _guard = tch::no_grad_guard();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let waits: Vec<std::time::Duration> = jobs.iter().map(|j| started.saturating_duration_since(j.queued_at)).collect();
        let result = run_batch(&members, &jobs, device, shape);
        if let Some(observe) = observer.get() {
            observe(&ForwardPass { studies: jobs.len(), duration: started.elapsed(), waits });
        }
        match result {
            Ok(per_job) => {
                for (job, probs) in jobs.into_iter().zip(per_job) {
                    let _ = job.reply.send(Ok(probs));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(InferenceError::Forward(e.clone())));
                }
            }
        }
    }
}

/// One forward pass per member over the whole batch; returns, per job, each member's P(class 1).
fn run_batch(members: &[CModule], jobs: &[Job], device: Device, shape: [usize; 3]) -> Result<Vec<Vec<f64>>, String> {
    let [d, h, w] = shape.map(|x| x as i64);
    let flat: Vec<f32> = jobs.iter().flat_map(|j| j.input.data.iter().copied()).collect();
    let batch = Tensor::from_slice(&flat).view([jobs.len() as i64, 2, d, h, w]).to_device(device);
    let mut per_job = vec![Vec::with_capacity(members.len()); jobs.len()];
    for m in members {
        let logits = m.forward_ts(&[&batch]).map_err(|e| e.to_string())?;
        let p = logits.softmax(-1, Kind::Float).select(1, 1).to_device(Device::Cpu);
        let p: Vec<f32> = Vec::<f32>::try_from(&p).map_err(|e| e.to_string())?;
        if p.len() != jobs.len() {
            return Err(format!("member returned {} outputs for {} inputs", p.len(), jobs.len()));
        }
        for (i, v) in p.into_iter().enumerate() {
            per_job[i].push(v as f64);
        }
    }
    Ok(per_job)
}
