//! The thread each engine runs on, and the rayon pool it runs its model steps in.
//!
//! burn's flex CPU backend parallelises matmuls with rayon. Driven from a thread outside a
//! pool, each parallel op hands its work to the pool's threads and the driving thread sleeps;
//! between ops those threads spin waiting for more, competing with the driving thread's
//! serial work. On a 2-core machine that cost ~7% of a batch-8 gpt2 decode step. Inside the
//! pool, the driving thread is one of the workers. Each engine gets a pool of its own, so one
//! engine's step never ends up waiting inside another engine's work.

use std::sync::mpsc::{sync_channel, SyncSender};

/// Starts engine `name`'s thread: it waits until the returned gate is dropped, then runs
/// `work` (the engine's whole loop) in a pool of its own.
pub fn spawn_engine(name: &str, work: impl FnOnce() + Send + 'static) -> StartGate {
    let (gate, opened) = sync_channel::<()>(0);
    let pool_name = name.to_string();
    std::thread::Builder::new()
        .name(format!("engine-{name}"))
        .spawn(move || {
            // Returns once the gate is dropped: nothing is ever sent on it.
            let _ = opened.recv();
            run_in_own_pool(&pool_name, work)
        })
        .expect("the engine thread starts");
    StartGate {
        _open_when_dropped: gate,
    }
}

/// Holds a just-started engine before its first job; dropping it lets the engine go.
/// With it, jobs can be queued to wait together, whatever the thread scheduler does.
pub struct StartGate {
    /// Never sent on: dropping it disconnects the channel the engine waits on.
    _open_when_dropped: SyncSender<()>,
}

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
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use super::{run_in_own_pool, spawn_engine};

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

    #[test]
    fn a_spawned_engine_starts_its_work_only_once_the_gate_is_dropped() {
        let (started, ran) = channel();
        let gate = spawn_engine("held", move || {
            started
                .send(std::thread::current().name().map(str::to_string))
                .unwrap();
        });
        assert!(
            ran.recv_timeout(Duration::from_millis(100)).is_err(),
            "ran while held"
        );
        drop(gate);
        let thread = ran.recv().unwrap().unwrap();
        assert!(thread.starts_with("held-compute-"), "{thread}");
    }
}
