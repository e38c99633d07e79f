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
