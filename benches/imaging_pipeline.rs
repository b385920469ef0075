//! Issue 4 benchmark: one study of two series of 176 × 256 × 256 16-bit voxels (T1c + T2) on a
//! local Orthanc, through the code the service runs for it: series discovery (`pipeline::discover`:
//! QIDO-RS with `includefield`, recognition, WADO-RS retrieval of both series at once; the older
//! path — every series' WADO-RS metadata first — is timed beside it for reference), geometry
//! ("assembly"), pixel decode, and preprocessing (`prepare` with the shipped model's recipe).
//! Target on the 2-vCPU development VM: under 2 s in total and under 1 GiB peak memory.
//!
//!     scripts/bench_imaging.sh            # = make bench-imaging: peers, then this program
//!     cargo bench --locked --bench imaging_pipeline -- [--runs N] [--decode-reps N]
//!
//! Not a test: it prints figures and asserts nothing about speed. What it does:
//!
//! 1. makes the study once (`bench/make_imaging_study.py`, cached under
//!    `$NEUROCDS_CACHE/bench-imaging/v<VERSION>`) and uploads it to the Orthanc named by
//!    `NEUROCDS_TEST_ORTHANC` (`POST /instances`; skipped when Orthanc already has it);
//! 2. runs the pipeline once to warm Orthanc and the page cache, then `--runs` times (default 5),
//!    each in a fresh child process of this program, so that the peak memory (the child's
//!    `VmHWM`) belongs to one pipeline run and nothing else; the child's high-water mark just
//!    before the pipeline starts (runtime, client, libtorch mapped in) is shown beside it;
//! 3. times the decode alone against pydicom + numpy on the same files, in this one run: ours
//!    (read + parse + `Volume::assemble`, i.e. geometry, decode and rescale into the f32 volume)
//!    and `bench/decode_pydicom.py` (dcmread + pixel_array + rescale to float32, per file), pass
//!    for pass in turn; prints MB/s of DICOM file bytes for each and the ratio.
//!
//! The stages follow `pipeline::analyse` (`Analyser::analyse`): the same client calls, the same
//! `spawn_blocking` for assembly and preprocessing. Decode and assembly are the two halves of
//! `Volume::assemble` (`StackPlan::new` and `StackPlan::decode`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use figment::Figment;
use figment::providers::{Format, Toml};
use neurocds::config::Settings;
use neurocds::dicomweb::DicomWebClient;
use neurocds::fhir::study::PriorStudy;
use neurocds::pipeline::{analysis::Stopwatch, discover::discover};
use neurocds_analysis::imaging::preprocess::{Recipe, prepare};
use neurocds_analysis::imaging::{SeriesRules, StackPlan, Volume, select_series};
use neurocds_analysis::inference::Manifest;
use serde::{Deserialize, Serialize};

/// Must match `VERSION` in bench/make_imaging_study.py: a new version makes a new study.
const STUDY_VERSION: &str = "1";
const DEFAULT_RUNS: usize = 5;
const DEFAULT_DECODE_REPS: usize = 5;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Deserialize)]
struct StudyManifest {
    version: String,
    study_uid: String,
    lesion_centre_lps: [f64; 3],
    series: Vec<StudySeries>,
}

#[derive(Debug, Deserialize)]
struct StudySeries {
    name: String,
    series_uid: String,
    slices: usize,
    rows: usize,
    cols: usize,
    /// Relative to the study folder.
    files: Vec<PathBuf>,
}

impl StudyManifest {
    fn series(&self, name: &str) -> Result<&StudySeries> {
        self.series.iter().find(|s| s.name == name).ok_or_else(|| anyhow!("the bench study has no {name} series"))
    }

    fn files(&self, dir: &Path) -> Vec<PathBuf> {
        self.series.iter().flat_map(|s| s.files.iter().map(|f| dir.join(f))).collect()
    }
}

/// What one child process measured: milliseconds per stage and its memory high-water marks.
#[derive(Debug, Serialize, Deserialize)]
struct RunReport {
    /// The reference path: every series' full metadata, then the choice.
    metadata_ms: f64,
    /// The service's discovery: the series search with `includefield`...
    search_ms: f64,
    /// ...then the provisional choice retrieved (with any other metadata beside it).
    retrieval_ms: f64,
    assembly_ms: f64,
    decode_ms: f64,
    preprocessing_ms: f64,
    total_ms: f64,
    /// VmHWM (KiB) of the child just before the pipeline started.
    baseline_hwm_kib: u64,
    /// VmHWM (KiB) of the child after the pipeline.
    peak_hwm_kib: u64,
    lesion_ml: f64,
    lesion_offset_mm: f64,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: start the peers first (`eval \"$(scripts/peers.sh start)\"`) or run scripts/bench_imaging.sh"))
}

fn tools_python() -> Result<PathBuf> {
    let python = PathBuf::from(env("NEUROCDS_CACHE")?).join("tools-venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/bootstrap.sh", python.display());
    }
    Ok(python)
}

/// One field of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench` to harness-less benchmarks.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--one-run") {
        let [_, study_dir, base] = args.as_slice() else { bail!("usage: --one-run STUDY_DIR DICOMWEB_BASE") };
        let report = one_run(Path::new(study_dir), base)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let mut runs = DEFAULT_RUNS;
    let mut decode_reps = DEFAULT_DECODE_REPS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> Result<usize> { it.next().and_then(|v| v.parse().ok()).filter(|n| *n > 0).ok_or_else(|| anyhow!("{what} needs a positive number")) };
        match a.as_str() {
            "--runs" => runs = number("--runs")?,
            "--decode-reps" => decode_reps = number("--decode-reps")?,
            other => bail!("unknown argument {other:?} (--runs N, --decode-reps N)"),
        }
    }
    drive(runs, decode_reps)
}

// ---------------------------------------------------------------------------------------------
// The driver.

fn drive(runs: usize, decode_reps: usize) -> Result<()> {
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (dir, study) = study()?;
    upload(&dir, &study)?;
    let base = env("NEUROCDS_TEST_DICOMWEB")?;
    println!("{}", machine());
    println!("load average before: {}", load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let t1c = study.series("t1c")?;
    println!(
        "study: 2 series of {} x {} x {} 16-bit voxels (slices x rows x columns), {} files, {:.1} MiB, {}",
        t1c.slices,
        t1c.rows,
        t1c.cols,
        study.files(&dir).len(),
        file_bytes(&study.files(&dir)) as f64 / MIB,
        dir.display()
    );

    let warm = child_run(&dir, &base).context("warm-up run")?;
    println!("warm-up run (discarded): total {:.0} ms, peak {:.0} MiB", warm.total_ms, warm.peak_hwm_kib as f64 / 1024.0);
    let mut reports = Vec::with_capacity(runs);
    for i in 0..runs {
        let r = child_run(&dir, &base).with_context(|| format!("run {}", i + 1))?;
        eprintln!("run {}: {r:?}", i + 1);
        reports.push(r);
    }
    print_stage_table(&reports);

    let (ours, theirs) = decode_comparison(&dir, &study, decode_reps)?;
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nDecode throughput on the same {} files ({:.1} MB of DICOM), median of {decode_reps} passes each, taken in turn in this run:", study.files(&dir).len(), ours.bytes as f64 / 1e6);
    println!("| decoder | median | best | MB/s (median) |");
    println!("|---|---|---|---|");
    for d in [&ours, &theirs] {
        println!("| {} | {:.0} ms | {:.0} ms | {:.0} |", d.name, d.median_s * 1e3, d.best_s * 1e3, d.mb_per_s());
    }
    println!("ratio neurocds / pydicom: {:.2}x (median MB/s)", ours.mb_per_s() / theirs.mb_per_s());
    println!("load average after: {}", load_after.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))).unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))).unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))).unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("machine: {cores} CPUs ({cpu}), {mem} RAM, {os}")
}

fn file_bytes(files: &[PathBuf]) -> u64 {
    files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
}

/// The cached study, made on first use.
fn study() -> Result<(PathBuf, StudyManifest)> {
    let root = PathBuf::from(env("NEUROCDS_CACHE")?).join("bench-imaging");
    let dir = root.join(format!("v{STUDY_VERSION}"));
    if !dir.join("manifest.json").exists() {
        let tmp = root.join(format!("v{STUDY_VERSION}.partial"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        eprintln!("making the bench study in {} (once; about 10 s)", dir.display());
        let script = repo().join("bench/make_imaging_study.py");
        let status = Command::new(tools_python()?).arg(&script).arg(&tmp).status().with_context(|| format!("run {}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        std::fs::rename(&tmp, &dir)?;
    }
    let text = std::fs::read_to_string(dir.join("manifest.json"))?;
    let manifest: StudyManifest = serde_json::from_str(&text).context("bench study manifest.json")?;
    if manifest.version != STUDY_VERSION {
        bail!("{} holds study version {}, expected {STUDY_VERSION}: delete the folder", dir.display(), manifest.version);
    }
    Ok((dir, manifest))
}

/// Uploads the study to Orthanc unless it already holds every instance.
fn upload(dir: &Path, study: &StudyManifest) -> Result<()> {
    let orthanc = env("NEUROCDS_TEST_ORTHANC")?;
    let files = study.files(dir);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let query = serde_json::json!({"Level": "Instance", "Query": {"StudyInstanceUID": study.study_uid}});
        let found: Vec<serde_json::Value> = http.post(format!("{orthanc}/tools/find")).json(&query).send().await?.error_for_status()?.json().await?;
        if found.len() == files.len() {
            return Ok(());
        }
        eprintln!("uploading {} files to {orthanc}", files.len());
        for f in &files {
            let body = tokio::fs::read(f).await.with_context(|| f.display().to_string())?;
            let r = http.post(format!("{orthanc}/instances")).header("Content-Type", "application/dicom").body(body).send().await?;
            if !r.status().is_success() {
                bail!("upload of {} to Orthanc: HTTP {}", f.display(), r.status());
            }
        }
        Ok(())
    })
}

fn child_run(dir: &Path, base: &str) -> Result<RunReport> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).arg("--one-run").arg(dir).arg(base).output()?;
    if !out.status.success() {
        bail!("child run failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().ok_or_else(|| anyhow!("child run printed nothing"))?;
    Ok(serde_json::from_str(line)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn print_stage_table(reports: &[RunReport]) {
    let stage = |f: fn(&RunReport) -> f64| reports.iter().map(f).collect::<Vec<f64>>();
    let rows: [(&str, Vec<f64>); 7] = [
        ("*for reference, not in the total:* every series' WADO-RS metadata first, then recognition (the path before issue 18)", stage(|r| r.metadata_ms)),
        ("series search (QIDO-RS with `includefield`; `pipeline::discover`)", stage(|r| r.search_ms)),
        ("retrieval (WADO-RS, both series at once, parsed; other metadata beside it)", stage(|r| r.retrieval_ms)),
        ("decode (pixel data → rescaled f32 volume)", stage(|r| r.decode_ms)),
        ("assembly (geometry checks, slice order)", stage(|r| r.assembly_ms)),
        ("preprocessing (`prepare`)", stage(|r| r.preprocessing_ms)),
        ("**total**", stage(|r| r.total_ms)),
    ];
    println!("\nPipeline, {} runs, each in a fresh process:", reports.len());
    println!("| stage | median | best |");
    println!("|---|---|---|");
    for (name, v) in rows {
        println!("| {name} | {:.0} ms | {:.0} ms |", median(v.clone()), best(&v));
    }
    let peak: Vec<f64> = reports.iter().map(|r| r.peak_hwm_kib as f64 / 1024.0).collect();
    let baseline: Vec<f64> = reports.iter().map(|r| r.baseline_hwm_kib as f64 / 1024.0).collect();
    let delta: Vec<f64> = reports.iter().map(|r| (r.peak_hwm_kib.saturating_sub(r.baseline_hwm_kib)) as f64 / 1024.0).collect();
    println!("| peak memory of the run (VmHWM) | {:.0} MiB | max {:.0} MiB |", median(peak.clone()), peak.iter().copied().fold(0.0, f64::max));
    println!("| of which before the pipeline (process, runtime, libtorch mapped) | {:.0} MiB | |", median(baseline));
    println!("| growth during the pipeline | {:.0} MiB | max {:.0} MiB |", median(delta.clone()), delta.iter().copied().fold(0.0, f64::max));
    let r = &reports[0];
    println!("lesion found: {:.1} mL, centre {:.1} mm from the planted one", r.lesion_ml, r.lesion_offset_mm);
}

// ---------------------------------------------------------------------------------------------
// One pipeline run (the child).

fn one_run(dir: &Path, base: &str) -> Result<RunReport> {
    let text = std::fs::read_to_string(dir.join("manifest.json"))?;
    let study: StudyManifest = serde_json::from_str(&text)?;
    // The shipped configuration's DICOMweb limits and timeout; the database URL is not used.
    let settings = Settings::from_figment(
        Figment::new().merge(Toml::file_exact(repo().join("config/default.toml"))).merge(("database.url", "postgres://unused@127.0.0.1/unused")),
    )?;
    let model = Manifest::load(&repo().join("models/ensemble/manifest.json"))?;
    let recipe = Recipe { shape: model.input.shape, spacing_mm: model.input.spacing_mm };
    let rules = SeriesRules::default();
    // The bench's Orthanc listens on loopback: allowed here as `egress.allowed_networks` would.
    let guard = neurocds::egress::AddressGuard::new(vec![neurocds::egress::parse_network("127.0.0.0/8").map_err(anyhow::Error::msg)?]);
    let client = DicomWebClient::new(&settings.dicomweb, &guard)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let baseline_hwm_kib = proc_status_kib("VmHWM");

    rt.block_on(async {
        // The reference path, timed apart: every series' metadata, then the choice.
        let t = Instant::now();
        let metadata = client.series_metadata(base, &study.study_uid).await?;
        let reference = select_series(&rules, &metadata);
        let metadata_ms = ms(t);

        let start = Instant::now();
        let prior = PriorStudy { reference: None, study_uid: study.study_uid.clone(), started: None, description: None, dicomweb: Some(base.to_owned()), series_dicomweb: Default::default() };
        let mut watch = Stopwatch::start();
        let found = discover(&client, &rules, &prior, base, &mut watch).await.map_err(|e| anyhow!("discovery: {}", e.0))?;
        let (search_ms, retrieval_ms) = (watch.timings["series_metadata"] as f64, watch.timings["retrieval"] as f64);
        let selection = found.selection;
        if selection.t1c != reference.t1c || selection.t2 != reference.t2 {
            bail!("discovery chose otherwise than the reference path: {:#?}", selection.verdicts);
        }
        let (Some(t1c_uid), Some(t2_uid)) = (selection.t1c.clone(), selection.t2.clone()) else {
            bail!("series recognition did not choose a T1c and a T2: {:#?}", selection.verdicts);
        };
        if t1c_uid != study.series("t1c")?.series_uid || t2_uid != study.series("t2")?.series_uid {
            bail!("series recognition chose other series: {:#?}", selection.verdicts);
        }
        let (t1c_objs, t2_objs) = found.instances.ok_or_else(|| anyhow!("nothing retrieved"))??;

        // As `analyse` does: one blocking task, T1c then T2, each series' objects dropped once
        // its volume exists.
        let (t1c, t2, assembly_ms, decode_ms) = tokio::task::spawn_blocking(move || -> Result<(Volume, Volume, f64, f64)> {
            let (a, a_plan, a_decode) = assemble_timed(&t1c_uid, &t1c_objs)?;
            drop(t1c_objs);
            let (b, b_plan, b_decode) = assemble_timed(&t2_uid, &t2_objs)?;
            Ok((a, b, a_plan + b_plan, a_decode + b_decode))
        })
        .await??;

        let t = Instant::now();
        let prepared = tokio::task::spawn_blocking(move || prepare(&t1c, &t2, &recipe)).await??;
        let preprocessing_ms = ms(t);
        let total_ms = ms(start);
        let planted = study.lesion_centre_lps;
        let c = prepared.lesion_centre_lps;
        let lesion_offset_mm = ((c[0] - planted[0]).powi(2) + (c[1] - planted[1]).powi(2) + (c[2] - planted[2]).powi(2)).sqrt();
        Ok(RunReport {
            metadata_ms,
            search_ms,
            retrieval_ms,
            assembly_ms,
            decode_ms,
            preprocessing_ms,
            total_ms,
            baseline_hwm_kib,
            peak_hwm_kib: proc_status_kib("VmHWM"),
            lesion_ml: prepared.lesion_volume_ml,
            lesion_offset_mm,
        })
    })
}

/// `Volume::assemble`, timed in its two halves: (volume, geometry ms, decode ms).
fn assemble_timed(series_uid: &str, instances: &[DefaultDicomObject]) -> Result<(Volume, f64, f64)> {
    let t = Instant::now();
    let plan = StackPlan::new(series_uid, instances)?;
    let plan_ms = ms(t);
    let t = Instant::now();
    let volume = plan.decode()?;
    Ok((volume, plan_ms, ms(t)))
}

// ---------------------------------------------------------------------------------------------
// Decode throughput against pydicom.

struct DecodeTiming {
    name: String,
    bytes: u64,
    median_s: f64,
    best_s: f64,
}

impl DecodeTiming {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.median_s
    }
}

#[derive(Deserialize)]
struct PydicomFiles {
    file_bytes: u64,
    voxels: u64,
    pydicom: String,
    numpy: String,
}

#[derive(Deserialize)]
struct PydicomPass {
    seconds: f64,
}

/// One pass of ours over every file of the study: read, parse, `Volume::assemble` per series.
/// Returns the voxels decoded.
fn decode_pass(dir: &Path, study: &StudyManifest) -> Result<u64> {
    let mut voxels = 0;
    for s in &study.series {
        let objs = s
            .files
            .iter()
            .map(|f| {
                let path = dir.join(f);
                OpenFileOptions::new().open_file(&path).with_context(|| path.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        voxels += Volume::assemble(&s.series_uid, &objs)?.data.len() as u64;
    }
    Ok(voxels)
}

/// Our decode and pydicom's, pass for pass in turn (after one untimed pass each), so that both
/// see the same load on the machine.
fn decode_comparison(dir: &Path, study: &StudyManifest, reps: usize) -> Result<(DecodeTiming, DecodeTiming)> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let bytes = file_bytes(&study.files(dir));
    let script = repo().join("bench/decode_pydicom.py");
    let mut child = Command::new(tools_python()?).arg(&script).arg(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().with_context(|| format!("run {}", script.display()))?;
    let (Some(mut to_py), Some(from_py)) = (child.stdin.take(), child.stdout.take()) else { bail!("no pipes to {}", script.display()) };
    let mut from_py = BufReader::new(from_py).lines();
    let mut read_line = || -> Result<String> { from_py.next().ok_or_else(|| anyhow!("{} stopped", script.display()))?.map_err(Into::into) };
    let files: PydicomFiles = serde_json::from_str(&read_line()?).context("decode_pydicom.py output")?;
    let voxels = decode_pass(dir, study)?;
    if files.voxels != voxels || files.file_bytes != bytes {
        bail!("pydicom decoded {} voxels of {} bytes, we {voxels} of {bytes}", files.voxels, files.file_bytes);
    }
    let (mut ours, mut theirs) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let t = Instant::now();
        decode_pass(dir, study)?;
        ours.push(t.elapsed().as_secs_f64());
        writeln!(to_py)?;
        to_py.flush()?;
        let pass: PydicomPass = serde_json::from_str(&read_line()?).context("decode_pydicom.py pass")?;
        theirs.push(pass.seconds);
    }
    drop(to_py);
    child.wait()?;
    Ok((
        DecodeTiming { name: "neurocds (dicom-rs: open + Volume::assemble)".into(), bytes, median_s: median(ours.clone()), best_s: best(&ours) },
        DecodeTiming {
            name: format!("pydicom {} + numpy {} (dcmread + pixel_array + rescale to float32)", files.pydicom, files.numpy),
            bytes,
            median_s: median(theirs.clone()),
            best_s: best(&theirs),
        },
    ))
}
