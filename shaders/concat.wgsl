// concat: copy a block of channels between two NCHW tensors. Concatenation along channels copies
// each input into its slice of the output; its backward (split) copies each slice back out.
//
//   dst[n, dst_offset + c, s] = src[n, src_offset + c, s]   for c < channels, s < S
//   src: [N, src_channels, S], dst: [N, dst_channels, S]
//
// Bindings: 0 uniform ChannelCopyParams, 1 src (read), 2 dst (read_write).
// Dispatch: one thread per copied element (N*channels*S), workgroups of 256, folded into y past
// 65535 groups.

struct ChannelCopyParams {
    n: u32, channels: u32, s: u32, src_channels: u32,
    src_offset: u32, dst_channels: u32, dst_offset: u32,
}

@group(0) @binding(0) var<uniform> p: ChannelCopyParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn copy_channels(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wg, groups, lid);
    if (idx >= p.n * p.channels * p.s) {
        return;
    }
    let s = idx % p.s;
    let c = (idx / p.s) % p.channels;
    let n = idx / (p.s * p.channels);
    dst[(n * p.dst_channels + p.dst_offset + c) * p.s + s] =
        src[(n * p.src_channels + p.src_offset + c) * p.s + s];
}
