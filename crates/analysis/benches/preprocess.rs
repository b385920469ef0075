//! Issue 18: `imaging::preprocess::prepare` alone — resampling, head mask, statistics, bias field,
//! lesion finding, crop, key images — on a full-resolution phantom study (two 176 × 256 × 256
//! series, 0.9 × 0.9 × 1 mm, an enhancing sphere), in the shipped model's recipe (32³ at 2 mm),
//! many rounds, by step. A program, not a timed test; figures go in BENCHMARKS.md.
//!
//!   cargo bench --locked -p neurocds-analysis --bench preprocess [-- ROUNDS]

use std::time::Duration;

use neurocds_analysis::imaging::preprocess::{Recipe, Steps, prepare_timed};

#[path = "../tests/support/phantom.rs"]
mod phantom;
use phantom::Phantom;

const RECIPE: Recipe = Recipe { shape: [32, 32, 32], spacing_mm: 2.0 };

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(21);
    let ph = Phantom { dims: (176, 256, 256), anatomy_dims: (176, 256, 256), spacing: [0.9, 0.9, 1.0], lesion: Some(([150.0, 100.0, 100.0], 12.0)), ..Phantom::head() };
    let (t1, t2) = (ph.volume(true), ph.volume(false));
    println!("prepare: 2 × 176 × 256 × 256 phantom, recipe 32³ at 2 mm, {rounds} rounds after one warm-up, rayon threads {}", rayon::current_num_threads());
    let mut totals = Vec::new();
    let mut by_step: Vec<(&'static str, Vec<Duration>)> = Vec::new();
    for round in 0..=rounds {
        let mut steps = Steps::default();
        let started = std::time::Instant::now();
        let prepared = prepare_timed(&t1, &t2, &RECIPE, &mut steps);
        let took = started.elapsed();
        if let Err(a) = prepared {
            eprintln!("the phantom was not prepared: {}", a.reason);
            std::process::exit(1);
        }
        if round == 0 {
            continue;
        }
        totals.push(took);
        for (name, d) in steps.took {
            match by_step.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(d),
                None => by_step.push((name, vec![d])),
            }
        }
    }
    println!();
    println!("| step | median ms |");
    println!("|---|---|");
    for (name, v) in by_step {
        println!("| {name} | {} |", ms(median(v)));
    }
    let (lo, hi) = (totals.iter().min().copied().unwrap_or_default(), totals.iter().max().copied().unwrap_or_default());
    println!("| **total** | **{}** (min {}, max {}) |", ms(median(totals)), ms(lo), ms(hi));
}
