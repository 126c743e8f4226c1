//! The rayon pool each engine runs its model steps in.
//!
//! burn's flex CPU backend parallelises matmuls with rayon. Driven from a thread outside a
//! pool, each parallel op hands its work to the pool's threads and the driving thread sleeps;
//! between ops those threads spin waiting for more, competing with the driving thread's
//! serial work. On a 2-core machine that cost ~7% of a batch-8 gpt2 decode step. Inside the
//! pool, the driving thread is one of the workers. Each engine gets a pool of its own, so one
//! engine's step never ends up waiting inside another engine's work.

/// Runs `work` (an engine's whole loop) on a worker of a new rayon pool named after
/// `engine`, with one thread per core (or `RAYON_NUM_THREADS`).
pub fn run_in_own_pool<R: Send>(engine: &str, work: impl FnOnce() -> R + Send) -> R {
    let prefix = format!("{engine}-compute");
    rayon::ThreadPoolBuilder::new()
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
        .expect("the engine's compute threads start")
        .install(work)
}

#[cfg(test)]
mod tests {
    use super::run_in_own_pool;

    #[test]
    fn the_work_runs_on_a_worker_of_a_pool_named_after_the_engine() {
        let (index, name) = run_in_own_pool("gpt2", || {
            (
                rayon::current_thread_index(),
                std::thread::current().name().map(str::to_string),
            )
        });
        assert!(index.is_some(), "not on a rayon worker");
        assert!(name.unwrap().starts_with("gpt2-compute-"));
    }
}
