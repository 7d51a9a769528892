//! Where the model core's serial work runs (every forward and backward pass of the paper's §3
//! pipeline). The kernels split their work over rayon's pool of one thread per core. Called
//! from a thread outside the pool, each split hands its tasks to the pool, wakes a sleeping
//! pool thread (a system call, and on a virtual machine an interrupt to another virtual CPU),
//! and puts the caller to sleep until the tasks are done: thousands of times per training
//! step or decoding loop. Run on a pool thread instead, the caller queues the tasks where the
//! other threads take them and works on them itself, and between splits the other threads
//! are often still looking for work rather than asleep. Results are the same either way:
//! no kernel's arithmetic depends on the thread it runs on.

/// Runs `f` on a thread of the kernels' pool and returns its result; the calling thread
/// waits. Meant for one computation at a time (a command, a benchmark, the one stage of a run
/// computing one stage at a time): a pool thread waiting for its tasks may take up another
/// caller's whole `f` meanwhile, so concurrent callers would run nested in each other.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_on_a_pool_thread_and_returns_the_result() {
        assert!(rayon::current_thread_index().is_none());
        let (on, value) = super::on_pool(|| (rayon::current_thread_index(), 6 * 7));
        assert!(on.is_some(), "f ran outside the pool");
        assert_eq!(value, 42);
    }
}
