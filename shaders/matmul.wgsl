// matmul: batched, strided matrix product with an optional reduction over an outer index.
//
//   C[b](m, j) (+)= sum_{r < reduce} sum_{k < K} A[b, r](m, k) * B[b, r](k, j)
//
// Every operand is a strided view, so A·B, Aᵀ·B and A·Bᵀ are the same kernel with swapped
// strides, and summing over a batch (the weight gradient of a convolution) is the `reduce` index.
// A column index j of B and C may be folded in two, j = jo * n_inner + ji, so that the columns of
// several images (each a block of n_inner positions) form one wide matrix.
//   A(m, k) at a[b*a_bs + r*a_rs + m*a_ms + k*a_ks]
//   B(k, j) at b[b*b_bs + r*b_rs + k*b_ks + ji*b_ns + jo*b_no]   (b_view 0)
//   C(m, j) at c[b*c_bs + m*c_ms + ji + jo*c_no]
// With b_view 1 or 2, B is the column matrix of a convolution's input, read from the input where
// it lies (implicit GEMM: no column buffer; see prelude/matmul_params.wgsl). The epilogue adds a
// bias along C's rows or columns, adds a residual tensor shaped like C, and applies ReLU
// (bias_along, residual, relu).
//
// With row_sums, it also writes the sums of A's rows (a bias gradient, see the prelude).
//
// Bindings: 0 uniform MatmulParams, 1 A (read), 2 B (read), 3 C (read_write), 4 bias (read; any
// buffer when bias_along is 0), 5 sums (read_write; any when row_sums is 0), 6 residual (read;
// any when residual is 0), declared in
// prelude/matmul_params.wgsl (shared with matmul_subgroup.wgsl).
// Dispatch: (min(T, 65535), ceil(M / 32), batch * col_folds) workgroups of 16×8 threads, where
// T = ceil(N / 64) column tiles are folded into z as col_folds = ceil(T / 65535) when there are
// more than 65535 (workgroups past the last tile return at once). Each workgroup owns a
// 32×64 tile of C; thread (tx, ty) accumulates rows 4ty..4ty+3 × columns 4tx..4tx+3 as four vec4
// registers while 16-deep slices of A and B are staged in workgroup memory as vec4s.
// (a_tile[lid] below relies on THREADS == BK * BM / 4.)

const BM: u32 = 32u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const THREADS: u32 = 128u;

var<workgroup> a_tile: array<vec4<f32>, 128>; // [BK][BM / 4]: rows in fours
var<workgroup> b_tile: array<vec4<f32>, 256>; // [BK][BN / 4]: columns in fours

@compute @workgroup_size(16, 8)
fn matmul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let batch = wg.z / p.col_folds;
    let row0 = wg.y * BM;
    let col0 = ((wg.z % p.col_folds) * groups.x + wg.x) * BN;
    if (col0 >= p.n) {
        return; // a spare workgroup of the last column fold: the whole workgroup leaves
    }

    // Staging: each thread loads one vec4 of A (4 consecutive rows at one k) and two vec4s of B
    // (4 consecutive columns at two k) per slice, always at the same rows and columns, so their
    // offsets are computed once, outside the loops.
    let a_k = lid / (BM / 4u);
    let a_m4 = lid % (BM / 4u);
    var a_rows: array<u32, 4>;
    var a_ok: array<bool, 4>;
    let b_k = lid / (BN / 4u);
    let b_n4 = lid % (BN / 4u);
    var b_cols: array<u32, 4>;
    var b_ji: array<u32, 4>;
    var b_jo: array<u32, 4>;
    var b_ok: array<bool, 4>;
    for (var j = 0u; j < 4u; j++) {
        let m = row0 + a_m4 * 4u + j;
        a_ok[j] = m < p.m;
        a_rows[j] = batch * p.a_bs + m * p.a_ms;
        let n = col0 + b_n4 * 4u + j;
        let jo = n / p.n_inner;
        b_ok[j] = n < p.n;
        b_ji[j] = n - jo * p.n_inner;
        b_jo[j] = jo;
        b_cols[j] = batch * p.b_bs + b_ji[j] * p.b_ns + jo * p.b_no;
    }

    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    var row_sum = vec4<f32>(); // rows 4ty..4ty+3 of A, summed over r and k
    for (var r = 0u; r < p.reduce; r++) {
        for (var t0 = 0u; t0 < p.k; t0 += BK) {
            {
                let gk = t0 + a_k;
                let at = r * p.a_rs + gk * p.a_ks;
                var v = vec4<f32>();
                for (var j = 0u; j < 4u; j++) {
                    if (a_ok[j] && gk < p.k) {
                        v[j] = a[a_rows[j] + at];
                    }
                }
                a_tile[lid] = v;
            }
            for (var i = 0u; i < 2u; i++) {
                let kk = b_k + i * (THREADS / (BN / 4u));
                let gk = t0 + kk;
                let at = r * p.b_rs + gk * p.b_ks;
                var v = vec4<f32>();
                for (var j = 0u; j < 4u; j++) {
                    if (b_ok[j] && gk < p.k) {
                        if (p.b_view == 0u) {
                            v[j] = b[b_cols[j] + at];
                        } else {
                            v[j] = column_value(column_origin(batch, r, b_ji[j], b_jo[j]), tap_at(gk));
                        }
                    }
                }
                b_tile[kk * (BN / 4u) + b_n4] = v;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < BK; kk++) {
                let av = a_tile[kk * (BM / 4u) + lid3.y];
                let bv = b_tile[kk * (BN / 4u) + lid3.x];
                row_sum += av;
                acc0 = fma(vec4<f32>(av.x), bv, acc0);
                acc1 = fma(vec4<f32>(av.y), bv, acc1);
                acc2 = fma(vec4<f32>(av.z), bv, acc2);
                acc3 = fma(vec4<f32>(av.w), bv, acc3);
            }
            workgroupBarrier();
        }
    }

    if (p.row_sums != 0u && col0 == 0u && lid3.x == 0u) {
        for (var i = 0u; i < 4u; i++) {
            let gm = row0 + lid3.y * 4u + i;
            if (gm < p.m) {
                sums[batch * p.m + gm] = row_sum[i];
            }
        }
    }

    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < 4u; j++) {
        let gn = col0 + lid3.x * 4u + j;
        if (gn >= p.n) {
            break;
        }
        let jo = gn / p.n_inner;
        let ji = gn - jo * p.n_inner;
        let col = batch * p.c_bs + ji + jo * p.c_no;
        for (var i = 0u; i < 4u; i++) {
            let gm = row0 + lid3.y * 4u + i;
            if (gm < p.m) {
                let idx = col + gm * p.c_ms;
                var v = acc[i][j];
                if (p.accumulate != 0u) {
                    v += c[idx];
                }
                c[idx] = epilogue(v, gm, ji, idx);
            }
        }
    }
}
