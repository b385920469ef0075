//! Ensemble inference for one study, through the service's engine (issue 5 target: ≤ 300 ms on
//! the 2-core development VM). Not a test: figures go to BENCHMARKS.md.
//!
//!     make bench-inference        (= cargo bench --locked --bench inference)
//!
//! The input is a real synthetic study run through the service's preprocessing (not zeros). The
//! engine is started as `neurocds serve` starts it ([`Engine::start`]: hash-checked members on
//! the CPU, the dedicated inference thread, warm-up pass, libtorch intra-op threads = the
//! `model.threads` setting, whose default 0 means half the cores), then:
//!
//! 1. one study at a time: `Engine::predict` wall time (queue → worker → 5 members → reply);
//! 2. the same with 2 intra-op threads (all cores of the VM);
//! 3. 8 studies submitted at once, which the worker batches into one forward pass per member,
//!    against the same 8 one after the other.
//!
//! `BENCH_RUNS` (default 50) sets the number of timed runs after 5 warm-up runs.

use std::time::{Duration, Instant};

use neurocds_analysis::{
    imaging::preprocess::prepare,
    inference::{Engine, Manifest, ModelInput},
};
use neurocds_lab::cohort::{CohortSpec, generate_case};
use tch::Device;

const WARM_UP: usize = 5;
const SEED: u64 = 20261201;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let manifest_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ensemble/manifest.json");
    let manifest = Manifest::load(&manifest_path)?;
    let recipe = manifest.input.recipe();

    // The first few cases of a synthetic cohort that preprocessing accepts.
    let spec = CohortSpec::new(SEED, 64);
    let mut inputs = Vec::new();
    for index in 0..spec.patients {
        let case = generate_case(&spec, index);
        if let Ok(p) = prepare(&case.t1c, &case.t2, &recipe) {
            inputs.push(ModelInput { data: p.data, lesion_volume_ml: p.lesion_volume_ml, t1c_lesion_mean: p.t1c_lesion_mean });
        }
        if inputs.len() == 8 {
            break;
        }
    }
    let one = inputs.first().ok_or("no synthetic case could be prepared")?.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} cores; load average {}", load_average());
    println!("model: {} {} ({} members, input 2x{:?}); {runs} timed runs after {WARM_UP} warm-up", manifest.name, manifest.version, manifest.members.len(), manifest.input.shape);

    for threads in [0usize, 2] {
        let engine = Engine::start(&manifest_path, Device::Cpu, 16, threads, None)?;
        let label = if threads == 0 { format!("service default (model.threads = 0 -> {} thread(s))", (cores / 2).max(1)) } else { format!("{threads} threads") };
        let times = runtime.block_on(async {
            let mut times = Vec::with_capacity(runs);
            for i in 0..WARM_UP + runs {
                let started = Instant::now();
                engine.predict(one.clone()).await?;
                if i >= WARM_UP {
                    times.push(started.elapsed());
                }
            }
            Ok::<_, neurocds_analysis::inference::InferenceError>(times)
        })?;
        report(&format!("one study, {label}"), times);

        let batch_runs = (runs / 5).max(3);
        let (batched, sequential) = runtime.block_on(async {
            let (mut batched, mut sequential) = (Vec::new(), Vec::new());
            for i in 0..WARM_UP.min(2) + batch_runs {
                let started = Instant::now();
                let all = futures_util::future::join_all(inputs.iter().cloned().map(|x| engine.predict(x))).await;
                let b = started.elapsed();
                all.into_iter().collect::<Result<Vec<_>, _>>()?;
                let started = Instant::now();
                for x in &inputs {
                    engine.predict(x.clone()).await?;
                }
                let s = started.elapsed();
                if i >= WARM_UP.min(2) {
                    batched.push(b);
                    sequential.push(s);
                }
            }
            Ok::<_, neurocds_analysis::inference::InferenceError>((batched, sequential))
        })?;
        report(&format!("{} studies submitted at once (batched), {label}", inputs.len()), batched);
        report(&format!("{} studies one after another, {label}", inputs.len()), sequential);
    }
    println!("load average after: {}", load_average());
    Ok(())
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: n = {}, median {:.1} ms, p95 {:.1} ms, max {:.1} ms, min {:.1} ms",
        times.len(),
        ms(at(0.5)),
        ms(at(0.95)),
        ms(times[times.len() - 1]),
        ms(times[0])
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "unknown".into())
}
