//! Memory for the model core's buffers. A forward and backward pass allocates tensors of
//! megabytes and frees them when the step ends; glibc's `malloc` serves such blocks with fresh
//! memory mappings, so every step pays a page fault and the kernel's zeroing for each page again
//! (a fifth of a training step's time on the machines measured). Serving them from the heap and
//! keeping freed memory there lets the next step reuse it: the process holds on to its largest
//! footprint, as a caching tensor allocator does. All threads share that one heap: glibc gives
//! other threads arenas of their own, mapped in regions of at most 64 MB, which map every
//! larger block afresh whatever the settings below say, and a pass that runs on a thread of
//! the kernels' pool (an embedding gradient of 113 MB, logits of 50 MB) would fault its pages
//! in again at every step.

/// Most bytes `free` leaves at the top of the heap before returning memory to the system: -1
/// for no limit (the largest `int` would be 2 GiB, less than a 0.5B model's training
/// footprint).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = -1;
/// Bytes the heap grows by beyond each request, so growth takes fewer system calls.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 256 << 20;
/// Arenas the allocator may create: the main heap alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 1;

/// Sets the process's allocator to keep freed memory for reuse (glibc on Linux; elsewhere the
/// allocator is left as it is). Returns whether every setting took effect. Call once, early in
/// `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() -> bool {
    // SAFETY: `mallopt` changes allocator parameters under the allocator's own lock; it reads
    // no memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
            && libc::mallopt(libc::M_ARENA_MAX, ARENAS) == 1
    }
}

/// Sets the process's allocator to keep freed memory for reuse (glibc on Linux; elsewhere the
/// allocator is left as it is). Returns whether every setting took effect. Call once, early in
/// `main`.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_takes_every_setting() {
        assert!(super::keep_freed_memory());
    }
}
