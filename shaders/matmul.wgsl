// matmul: batched, strided matrix product with an optional reduction over an outer index.
//
//   C[b](m, n) (+)= sum_{r < reduce} sum_{k < K} A[b, r](m, k) * B[b, r](k, n)
//
// Every operand is a strided view, so A·B, Aᵀ·B and A·Bᵀ are the same kernel with swapped
// strides, and summing over a batch (the weight gradient of a convolution) is the `reduce` index.
//   A(m, k) at a[b*a_bs + r*a_rs + m*a_ms + k*a_ks]
//   B(k, n) at b[b*b_bs + r*b_rs + k*b_ks + n*b_ns]
//   C(m, n) at c[b*c_bs + m*c_ms + n]
//
// Bindings: 0 uniform Params, 1 A (read), 2 B (read), 3 C (read_write).
// Dispatch: (ceil(N / 64), ceil(M / 32), batch) workgroups of 16×8 threads. Each workgroup owns a
// 32×64 tile of C; each thread accumulates 4×4 outputs in registers (rows ty + 8i, cols tx + 16j)
// while 16-deep slices of A and B are staged in workgroup memory.

struct Params {
    m: u32, n: u32, k: u32, reduce: u32,
    a_ms: u32, a_ks: u32, a_rs: u32, a_bs: u32,
    b_ks: u32, b_ns: u32, b_rs: u32, b_bs: u32,
    c_ms: u32, c_bs: u32, accumulate: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const BM: u32 = 32u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const THREADS: u32 = 128u;

var<workgroup> a_tile: array<f32, 512>;  // [BK][BM]
var<workgroup> b_tile: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(16, 8)
fn matmul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let batch = wg.z;
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let tx = lid3.x;
    let ty = lid3.y;
    let total_k = p.k * p.reduce;
    let a_base = batch * p.a_bs;
    let b_base = batch * p.b_bs;

    var acc: array<f32, 16>;
    for (var t0 = 0u; t0 < total_k; t0 += BK) {
        for (var i = 0u; i < BM * BK / THREADS; i++) {
            let e = lid + i * THREADS;
            let gm = row0 + e % BM;
            let gk = t0 + e / BM;
            var v = 0.0;
            if (gm < p.m && gk < total_k) {
                let r = gk / p.k;
                let kk = gk - r * p.k;
                v = a[a_base + r * p.a_rs + gm * p.a_ms + kk * p.a_ks];
            }
            a_tile[e] = v;
        }
        for (var i = 0u; i < BN * BK / THREADS; i++) {
            let e = lid + i * THREADS;
            let gn = col0 + e % BN;
            let gk = t0 + e / BN;
            var v = 0.0;
            if (gn < p.n && gk < total_k) {
                let r = gk / p.k;
                let kk = gk - r * p.k;
                v = b[b_base + r * p.b_rs + kk * p.b_ks + gn * p.b_ns];
            }
            b_tile[e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk * BM + ty + i * 8u];
                bv[i] = b_tile[kk * BN + tx + i * 16u];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let gm = row0 + ty + i * 8u;
        for (var j = 0u; j < 4u; j++) {
            let gn = col0 + tx + j * 16u;
            if (gm < p.m && gn < p.n) {
                let idx = batch * p.c_bs + gm * p.c_ms + gn;
                var v = acc[i * 4u + j];
                if (p.accumulate != 0u) {
                    v += c[idx];
                }
                c[idx] = v;
            }
        }
    }
}
