//! Helpers for the benchmarks only (compiled with the `bench` feature, never in the binary).

/// A positive whole number from the environment variable `name`, `default` when it is unset;
/// anything else stops the run with a clear message (a typo must not silently benchmark the
/// default).
pub fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name} must be a positive whole number, not {v:?}"),
        },
    }
}

/// CPU time this process has used so far, in microseconds: the sum over its live threads of
/// the scheduler's own accounting (`/proc/self/task/*/schedstat`, nanoseconds), so a short
/// round is measured exactly rather than in 10 ms clock ticks. `None` off Linux.
pub fn cpu_micros() -> Option<f64> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended since the listing took its time with it; skip it.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total as f64 / 1000.0)
}
