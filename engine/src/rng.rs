//! A small seeded generator (SplitMix64) for parameter initialisation and tests: the same seed
//! gives the same numbers on every platform.

/// SplitMix64 state; cloning forks an identical stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits (one SplitMix64 step).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-bound, bound).
    pub fn uniform(&mut self, bound: f32) -> f32 {
        (self.next_f32() * 2.0 - 1.0) * bound
    }

    /// `len` values uniform in [-bound, bound), e.g. a layer's initial weights.
    pub fn uniform_vec(&mut self, len: usize, bound: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(bound)).collect()
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * n as u64) >> 32) as u32
    }
}

/// PCG's RXS-M-XS output permutation of a 32-bit state, as `shaders/prelude/hash.wgsl` computes
/// it: the counter-based draws of dropout and augmentation.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The draw of counter (a, b) under `key`, as `shaders/prelude/hash.wgsl` computes it.
pub fn counter_hash(key: u32, a: u32, b: u32) -> u32 {
    pcg_hash(pcg_hash(pcg_hash(key) ^ a) ^ b)
}

/// A run's 64-bit seed folded to the 32 bits the shaders hash.
pub fn fold_seed(seed: u64) -> u32 {
    (seed ^ (seed >> 32)) as u32
}
