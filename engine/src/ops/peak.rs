//! peak.wgsl: the adapter's attainable FMA throughput and copy bandwidth, measured, against
//! which the bench reports each kernel's share (a roofline's two ceilings, measured rather than
//! taken from a datasheet, so that a software driver has one too).

use crate::context::{GpuContext, Tensor};
use crate::error::Result;
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// peak.wgsl's parameters.
    pub struct PeakParams {
        /// FMA steps each invocation of fma_peak runs.
        pub iterations: u32,
        /// vec4s copy_peak copies.
        pub len: u32,
        /// fma_peak's multiplier.
        pub scale: f32,
        /// fma_peak's addend.
        pub offset: f32,
    }
}

/// Writes one vec4 per invocation after `iterations` steps of 8 FMA chains.
pub const FMA_PEAK: KernelSpec = KernelSpec::new::<PeakParams>("peak", "fma_peak", &[(2, ReadWrite)]);
/// Copies `len` vec4s.
pub const COPY_PEAK: KernelSpec = KernelSpec::new::<PeakParams>("peak", "copy_peak", &[(1, Read), (2, ReadWrite)]);

/// fma_peak's multiplier and addend: the chains converge to 1, far from overflow and denormals.
const SCALE: f32 = 0.999;
const OFFSET: f32 = 0.001;
/// Invocations in a workgroup of fma_peak.
const FMA_WORKGROUP: usize = 64;

/// `groups` workgroups of 64 invocations, each running `iterations` FMA steps; `dst` holds 4
/// floats per invocation.
pub fn fma_peak(ctx: &GpuContext, groups: u32, iterations: u32, dst: &Tensor) -> Result<Dispatch> {
    dst.check_len("fma_peak output", 4 * FMA_WORKGROUP * groups as usize)?;
    let params = PeakParams { iterations, len: 0, scale: SCALE, offset: OFFSET };
    ctx.dispatch(&FMA_PEAK, &params, &[dst], [groups, 1, 1])
}

/// dst = src over `len` vec4s (4·len floats each), from `groups` workgroups of 256.
pub fn copy_peak(ctx: &GpuContext, groups: u32, len: usize, src: &Tensor, dst: &Tensor) -> Result<Dispatch> {
    src.check_len("copy_peak source", 4 * len)?;
    dst.check_len("copy_peak destination", 4 * len)?;
    let params = PeakParams { iterations: 0, len: len as u32, scale: 0.0, offset: 0.0 };
    ctx.dispatch(&COPY_PEAK, &params, &[src, dst], [groups, 1, 1])
}

/// The adapter's measured ceilings.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    /// FMA throughput, register-only, in GFLOP/s (an FMA counts 2).
    pub gflops: f64,
    /// Copy bandwidth in GB/s, bytes read and written both counted.
    pub copy_gbs: f64,
    /// How the times were taken (timestamp queries or wall clock).
    pub how: &'static str,
}

impl std::fmt::Display for Peak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FMA {:.1} GFLOP/s, copy {:.1} GB/s ({})", self.gflops, self.copy_gbs, self.how)
    }
}

/// Shortest time of `repeats` runs of one dispatch, and how it was timed.
#[cfg(not(target_arch = "wasm32"))]
fn best_time(ctx: &GpuContext, d: &Dispatch, repeats: usize) -> Result<(f64, &'static str)> {
    ctx.run(&[d])?; // compile and touch first
    let (times, how) = ctx.dispatch_seconds(&vec![d; repeats])?;
    Ok((times.into_iter().fold(f64::MAX, f64::min), how))
}

/// Measures both ceilings, growing each workload until one run takes at least 50 ms (so a fast
/// GPU is timed on enough work and lavapipe in well under a second), best of 3.
#[cfg(not(target_arch = "wasm32"))]
pub fn measure(ctx: &GpuContext) -> Result<Peak> {
    const LONG_ENOUGH: f64 = 0.05;
    const FLOP_PER_STEP: f64 = 64.0; // one fma_peak step of one invocation: 8 vec4 FMAs
    const COPY_WORKGROUP: usize = 256;
    let max_groups = ctx.max_workgroups_per_dimension().min(65535);
    let (mut groups, mut iterations) = (64u32, 1024u32);
    let dst = ctx.zeros(4 * FMA_WORKGROUP * max_groups as usize, "fma_peak output")?;
    let (gflops, how) = loop {
        let (t, how) = best_time(ctx, &fma_peak(ctx, groups, iterations, &dst)?, 3)?;
        let flop = FLOP_PER_STEP * iterations as f64 * (groups as usize * FMA_WORKGROUP) as f64;
        if t >= LONG_ENOUGH || iterations >= 1 << 20 {
            break (flop / t / 1e9, how);
        }
        if groups < max_groups {
            groups = (groups * 4).min(max_groups);
        } else {
            iterations *= 4;
        }
    };
    // Two buffers of up to 64 MiB each (within every adapter's binding limit).
    let bytes = ctx.max_binding_bytes().min(64 << 20);
    let len = (bytes / 16) as usize;
    let (src, dst) = (ctx.zeros(4 * len, "copy_peak source")?, ctx.zeros(4 * len, "copy_peak destination")?);
    let copy_groups = len.div_ceil(4 * COPY_WORKGROUP).min(max_groups as usize) as u32;
    let (t, _) = best_time(ctx, &copy_peak(ctx, copy_groups, len, &src, &dst)?, 3)?;
    Ok(Peak { gflops, copy_gbs: 2.0 * 16.0 * len as f64 / t / 1e9, how })
}

/// The CPU reference of peak.wgsl.
pub mod cpu {
    /// fma_peak's output for invocation `id` after `iterations` steps.
    pub fn fma_peak(id: u32, iterations: u32) -> [f32; 4] {
        let start = (id % 8) as f32 * 0.125;
        let mut chains = [[0f32; 4]; 8];
        for (c, chain) in chains.iter_mut().enumerate() {
            for (l, v) in chain.iter_mut().enumerate() {
                *v = start + (4 * c + l) as f32;
            }
        }
        for _ in 0..iterations {
            for v in chains.iter_mut().flatten() {
                *v = v.mul_add(super::SCALE, super::OFFSET);
            }
        }
        let sum = |a: [f32; 4], b: [f32; 4]| std::array::from_fn(|l| a[l] + b[l]);
        let c = chains;
        sum(sum(sum(c[0], c[1]), sum(c[2], c[3])), sum(sum(c[4], c[5]), sum(c[6], c[7])))
    }
}
