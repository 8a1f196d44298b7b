//! concat.wgsl: concatenation along channels and its backward (split), both a channel-block copy.

use crate::context::{grid_1d, GpuContext, Tensor};
use crate::error::{Error, Result};
use crate::kernel::{Access::*, Dispatch, KernelSpec};

crate::gpu_params! {
    /// concat.wgsl's parameters: a [`ChannelCopy`].
    pub struct ChannelCopyParams {
        /// Batch size.
        pub n: u32,
        /// Channels copied.
        pub channels: u32,
        /// Elements per channel.
        pub s: u32,
        /// Channels of the source.
        pub src_channels: u32,
        /// First source channel copied.
        pub src_offset: u32,
        /// Channels of the destination.
        pub dst_channels: u32,
        /// First destination channel written.
        pub dst_offset: u32,
    }
}

/// Reads src, writes dst; one thread per element copied.
pub const COPY_CHANNELS: KernelSpec =
    KernelSpec::new::<ChannelCopyParams>("concat", "copy_channels", &[(1, Read), (2, ReadWrite)]);

/// Copy `channels` channels of [n, ·, s] tensors: dst[:, dst_offset + c] = src[:, src_offset + c].
#[derive(Clone, Copy, Debug)]
pub struct ChannelCopy {
    /// Batch size.
    pub n: usize,
    /// Elements per channel (h·w).
    pub s: usize,
    /// Channels copied.
    pub channels: usize,
    /// Channels of the source, `[n, src_channels, s]`.
    pub src_channels: usize,
    /// First source channel copied.
    pub src_offset: usize,
    /// Channels of the destination, `[n, dst_channels, s]`.
    pub dst_channels: usize,
    /// First destination channel written.
    pub dst_offset: usize,
}

impl ChannelCopy {
    /// Input `part` ([n, part_channels, s]) goes to channels offset.. of out ([n, total, s]).
    pub fn concat(n: usize, s: usize, part_channels: usize, total: usize, offset: usize) -> ChannelCopy {
        ChannelCopy {
            n,
            s,
            channels: part_channels,
            src_channels: part_channels,
            src_offset: 0,
            dst_channels: total,
            dst_offset: offset,
        }
    }
    /// The backward of `concat`: the slice of the output gradient back to the input's shape.
    pub fn split(n: usize, s: usize, part_channels: usize, total: usize, offset: usize) -> ChannelCopy {
        ChannelCopy {
            n,
            s,
            channels: part_channels,
            src_channels: total,
            src_offset: offset,
            dst_channels: part_channels,
            dst_offset: 0,
        }
    }
    fn len(&self) -> usize {
        self.n * self.channels * self.s
    }
}

/// dst[:, dst_offset + c] = src[:, src_offset + c] for c < channels; other channels of dst are
/// left as they are.
pub fn copy_channels(ctx: &GpuContext, c: &ChannelCopy, src: &Tensor, dst: &Tensor) -> Result<Dispatch> {
    if c.src_offset + c.channels > c.src_channels || c.dst_offset + c.channels > c.dst_channels {
        return Err(Error::Shape(format!("channel copy out of range: {c:?}")));
    }
    src.check_len("channel copy source", c.n * c.src_channels * c.s)?;
    dst.check_len("channel copy destination", c.n * c.dst_channels * c.s)?;
    let u = |v: usize| v as u32;
    let params = ChannelCopyParams {
        n: u(c.n),
        channels: u(c.channels),
        s: u(c.s),
        src_channels: u(c.src_channels),
        src_offset: u(c.src_offset),
        dst_channels: u(c.dst_channels),
        dst_offset: u(c.dst_offset),
    };
    ctx.dispatch(&COPY_CHANNELS, &params, &[src, dst], grid_1d(c.len()))
}

/// The CPU reference of concat.wgsl.
pub mod cpu {
    use super::ChannelCopy;

    /// dst[:, dst_offset + c] = src[:, src_offset + c] for c < channels.
    pub fn copy_channels(c: &ChannelCopy, src: &[f32], dst: &mut [f32]) {
        for n in 0..c.n {
            for ch in 0..c.channels {
                let from = (n * c.src_channels + c.src_offset + ch) * c.s;
                let to = (n * c.dst_channels + c.dst_offset + ch) * c.s;
                dst[to..to + c.s].copy_from_slice(&src[from..from + c.s]);
            }
        }
    }
}
