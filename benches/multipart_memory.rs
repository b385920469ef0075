//! FUZZING.md finding 4: does parsing hostile WADO-RS answers leave memory behind? Resident
//! memory over tens of thousands of parses, the way libFuzzer drove the `multipart` target, but
//! without libFuzzer (whose own corpus and feature tables grow too).
//!
//!     cargo bench --locked --bench multipart_memory -- [--iterations N] [--runtime current|multi] [--fixtures DIR] [--save DIR]
//!     MALLOC_ARENA_MAX=2 cargo bench …     # the same with glibc held to two heap arenas
//!
//! Inputs: the multipart inputs of `tests/fixtures/fuzz/` (the one finding 4 stopped on among
//! them) and, from `--fixtures` (default `$NEUROCDS_CACHE/fuzz/fixtures`, written by `make fuzz`
//! or `scripts/testdata/make_dicom_fixtures.py`), every DICOM fixture wrapped two to a body as
//! the fuzz seeds are. Each iteration takes one input and spoils up to eight bytes of it
//! (a fixed-seed generator, so runs repeat), then reads it with `read_multipart`, the service's
//! own reader (parts parsed on the blocking pool). Prints resident memory as it goes and the
//! high-water mark, and any input that raises the mark by more than 64 MiB (kept in `--save`).
//! Asserts nothing: a program, not a timed test.

use std::path::{Path, PathBuf};
use std::time::Instant;

use neurocds::dicomweb::multipart::{Limits, read_multipart};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn dicom_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            dicom_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "dcm") {
            out.push(p);
        }
    }
}

fn part(bytes: &[u8]) -> Vec<u8> {
    let mut b = b"--fuzz\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
    b.extend_from_slice(bytes);
    b.extend_from_slice(b"\r\n");
    b
}

fn inputs(fixtures: &Path) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let regression = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    for entry in std::fs::read_dir(&regression).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "bin") {
            bodies.extend(std::fs::read(&p).ok());
        }
    }
    let mut files = Vec::new();
    dicom_files(fixtures, &mut files);
    files.sort();
    for pair in files.chunks(2) {
        let mut body = Vec::new();
        for f in pair {
            body.extend(part(&std::fs::read(f).unwrap_or_default()));
        }
        body.extend_from_slice(b"--fuzz--\r\n");
        bodies.push(body);
    }
    bodies
}

/// xorshift64*: the same spoilt inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let iterations: usize = arg("--iterations").and_then(|v| v.parse().ok()).unwrap_or(40_000);
    let runtime_kind = arg("--runtime").unwrap_or_else(|| "current".into());
    let cache = std::env::var("NEUROCDS_CACHE").unwrap_or_else(|_| format!("{}/.cache/neurocds", std::env::var("HOME").unwrap_or_default()));
    let fixtures = arg("--fixtures").map_or_else(|| PathBuf::from(&cache).join("fuzz/fixtures"), PathBuf::from);
    let bodies = inputs(&fixtures);
    let save = arg("--save");
    assert!(!bodies.is_empty(), "no inputs: run `make fuzz` or scripts/testdata/make_dicom_fixtures.py {}", fixtures.display());
    let runtime = match runtime_kind.as_str() {
        "multi" => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    }
    .expect("a runtime");
    // The fuzz target's limits.
    let limits = Limits { max_instances: 64, max_bytes: 8 << 20 };
    let content_type = "multipart/related; type=\"application/dicom\"; boundary=fuzz";
    println!(
        "{} inputs ({} from the fixtures), {iterations} iterations, {runtime_kind}-thread runtime, MALLOC_ARENA_MAX={}",
        bodies.len(),
        bodies.len().saturating_sub(3),
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    println!("{:>10} {:>10} {:>10} {:>8} {:>8}", "iteration", "RSS MiB", "peak MiB", "errors", "s");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut errors = 0usize;
    let report_every = (iterations / 20).max(1);
    for i in 0..=iterations {
        if i % report_every == 0 {
            println!("{i:>10} {:>10.1} {:>10.1} {errors:>8} {:>8.1}", status_kib("VmRSS:") as f64 / 1024.0, status_kib("VmHWM:") as f64 / 1024.0, started.elapsed().as_secs_f64());
        }
        if i == iterations {
            break;
        }
        let mut body = bodies[(rng.next() % bodies.len() as u64) as usize].clone();
        for _ in 0..rng.next() % 9 {
            let at = (rng.next() % body.len().max(1) as u64) as usize;
            if let Some(b) = body.get_mut(at) {
                *b = rng.next() as u8;
            }
        }
        let kept = save.as_ref().map(|_| body.clone());
        let peak_before = status_kib("VmHWM:");
        let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(body))]);
        let read = runtime.block_on(read_multipart(content_type, None, stream, "http://pacs.bench/series", &limits));
        if read.is_err() {
            errors += 1;
        }
        // An input that raised the high-water mark by more than the series budget allows.
        let grew = status_kib("VmHWM:").saturating_sub(peak_before);
        if grew > 64 * 1024 {
            println!("iteration {i}: the peak grew by {} MiB ({})", grew / 1024, read.as_ref().map_or_else(|e| e.to_string(), |o| format!("{} instances", o.len())));
            if let (Some(dir), Some(body)) = (&save, kept) {
                let path = PathBuf::from(dir).join(format!("peak-{i}.bin"));
                let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, body));
                println!("  kept as {}", path.display());
            }
        }
    }
}
