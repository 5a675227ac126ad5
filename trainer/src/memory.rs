//! The allocator's policy for training: keep freed memory for the next step instead of returning it to the system.
//!
//! Every optimiser step allocates and frees the same activations again (on a text encoder, blocks of tens of MB).
//! glibc's malloc serves blocks above its mmap threshold (32 MiB at most) with fresh mappings, unmaps them when
//! they are freed and trims its heaps, so each step faulted its memory in anew, page by page: a small MiniLM build
//! took 3.9 million page faults and spent a seventh of its CPU time in the kernel. With mappings off and trimming
//! out of reach, freed blocks are reused: 0.1 million faults. The arithmetic is untouched; the cost is that the
//! process keeps its peak memory until it exits.

/// Sets the policy; call it before any other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: `mallopt` only sets malloc's parameters, and no other thread is allocating yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Other allocators keep their own policy.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
