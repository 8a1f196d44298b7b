
// ---- prelude/hash.wgsl, joined by shaders/src/lib.rs ----
// PCG's RXS-M-XS output permutation of a 32-bit state (a bijection, well mixed): the
// counter-based random draws of dropout and augmentation (engine::rng::pcg_hash on the CPU).
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The draw of counter (a, b) under `key`: dropout's (seed, step, element), augmentation's
// (seed ^ salt, epoch, sample); engine::rng::counter_hash on the CPU.
fn counter_hash(key: u32, a: u32, b: u32) -> u32 {
    return pcg_hash(pcg_hash(pcg_hash(key) ^ a) ^ b);
}
