//! Command-line driver for long simulator runs (soak) and single-seed replays.
//!
//! ```text
//! cargo run -p dongting-raft-sim --release -- --seed 1234 [--trace]
//! cargo run -p dongting-raft-sim --release -- --seeds 100000 [--first 0] [--steps 300]
//!     [--threads 2] [--mutation CommitPreviousTerm]
//! ```

use std::process::ExitCode;

use dongting_raft_sim::{
    DEFAULT_STEPS, SimOptions, parse_mutation, replay_command, run_seed, run_seeds,
};

fn main() -> ExitCode {
    let mut seed = None;
    let mut first = 0u64;
    let mut seeds = 1000u64;
    let mut steps = DEFAULT_STEPS;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut trace = false;
    let mut mutation = dongting_raft::Mutation::None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--seed" => seed = val().parse().ok(),
            "--first" => first = val().parse().unwrap_or(0),
            "--seeds" => seeds = val().parse().unwrap_or(1000),
            "--steps" => steps = val().parse().unwrap_or(DEFAULT_STEPS),
            "--threads" => threads = val().parse().unwrap_or(1),
            "--trace" => trace = true,
            "--mutation" => match parse_mutation(&val()) {
                Some(m) => mutation = m,
                None => {
                    eprintln!("unknown mutation");
                    return ExitCode::FAILURE;
                }
            },
            _ => {
                eprintln!(
                    "usage: raft-sim [--seed N [--trace]] [--seeds N --first N --steps N \
                     --threads N] [--mutation NAME]"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(seed) = seed {
        let mut o = SimOptions::new(seed);
        o.steps = steps;
        o.mutation = mutation;
        o.trace = trace;
        return match run_seed(o) {
            Ok(st) => {
                println!("seed {seed} passed: {st:?}");
                ExitCode::SUCCESS
            }
            Err(v) => {
                println!("VIOLATION {v}");
                ExitCode::FAILURE
            }
        };
    }
    let t = std::time::Instant::now();
    let (violations, st) = run_seeds(first, seeds, steps, mutation, threads, false);
    println!(
        "{seeds} seeds from {first} ({steps} steps) in {:.1}s: {} violations; {st:?}",
        t.elapsed().as_secs_f64(),
        violations.len()
    );
    for v in &violations {
        println!(
            "VIOLATION {v}\n  replay: {}",
            replay_command(v.seed, steps, mutation)
        );
    }
    if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
