// matmul_subgroup: matmul.wgsl's product, for CPU drivers whose subgroups are 8 SIMD lanes
// (lavapipe/llvmpipe with AVX2). Same Params, bindings, views and results as matmul.wgsl:
//
//   C[b](m, j) (+)= sum_{r < reduce} sum_{k < K} A[b, r](m, k) * B[b, r](k, j)
//
// Why a second kernel: on such a driver an invocation is one lane of a SIMD register, a load
// whose address differs between lanes runs as a loop over the lanes, and a barrier is a
// coroutine switch. matmul.wgsl's workgroup-memory tiles make every lane load the same A values
// and stage each element twice. Here each lane loads only elements no other lane needs (two rows
// of A, its own two columns of B), the A values reach every lane through subgroupBroadcast (a
// register shuffle), there is no workgroup memory and no barrier, and K is not padded to a tile.
// No `enable subgroups;` directive: naga 30 rejects it, so shaders::browser_source adds it for
// browsers (whose compiler requires it); natively the feature is requested on the device.
//
// B may be a convolution's implicit column matrix (b_view 1 or 2), the epilogue adds a bias and
// applies ReLU, and A's row sums may be written too (row_sums), as in matmul.wgsl.
//
// Bindings: 0 uniform MatmulParams, 1 A (read), 2 B (read), 3 C (read_write), 4 bias (read),
// 5 sums (read_write), 6 residual (read), declared in prelude/matmul_params.wgsl.
// Dispatch: (min(T, 65535), ceil(M / 16), batch * col_folds) workgroups of 64 invocations, which
// must form 8 subgroups of 8 (launch only where the subgroup size is 8), T = ceil(N / 128)
// column tiles folded into z as in matmul.wgsl. Each subgroup owns a 16×16 tile of C, the 8
// subgroups of a workgroup side by side (fewer, larger workgroups cost a CPU driver less to
// launch): lane l loads rows l and l + 8 of A and computes all 16 rows of columns l and l + 8
// of its tile.

const LANES: u32 = 8u;
const ROWS: u32 = 16u;
const SUBGROUPS: u32 = 8u;

// Rows 0-7 of the tile from lo (row i in lane i), rows 8-15 from hi, in fours.
fn rows_0_3(lo: f32) -> vec4<f32> {
    return vec4(subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u));
}

fn rows_4_7(lo: f32) -> vec4<f32> {
    return vec4(subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u), subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u));
}

// The tile's sums in this lane: rows 0-15 of column a (ca0: rows 0-3, ...) and of column b, in
// fours (a struct of named vectors, not an array, so that a CPU driver keeps it in registers).
struct Tile {
    ca0: vec4<f32>, ca1: vec4<f32>, ca2: vec4<f32>, ca3: vec4<f32>,
    cb0: vec4<f32>, cb1: vec4<f32>, cb2: vec4<f32>, cb3: vec4<f32>,
}

// One k step: rows lo (lane i holds row i) and hi (row 8 + i) of A times this lane's entries
// xa and xb of its two columns of B, for the first `quads` fours of the tile's rows: a last tile
// that ends inside the tile (10, 20, 24 or 88 channels) skips the fours past it. `quads` is the
// same in every lane, so the branches cost no divergence.
fn accumulate(t: Tile, quads: u32, lo: f32, hi: f32, xa: f32, xb: f32) -> Tile {
    let va = vec4(xa);
    let vb = vec4(xb);
    var n = t;
    let r0 = rows_0_3(lo);
    n.ca0 = fma(r0, va, t.ca0);
    n.cb0 = fma(r0, vb, t.cb0);
    if (quads > 1u) {
        let r1 = rows_4_7(lo);
        n.ca1 = fma(r1, va, t.ca1);
        n.cb1 = fma(r1, vb, t.cb1);
    }
    if (quads > 2u) {
        let r2 = rows_0_3(hi);
        n.ca2 = fma(r2, va, t.ca2);
        n.cb2 = fma(r2, vb, t.cb2);
    }
    if (quads > 3u) {
        let r3 = rows_4_7(hi);
        n.ca3 = fma(r3, va, t.ca3);
        n.cb3 = fma(r3, vb, t.cb3);
    }
    return n;
}

// Writes (or adds) rows row0.. of one column of the tile.
fn store_column(acc: array<vec4<f32>, 4>, row0: u32, column: u32, batch: u32) {
    let jo = column / p.n_inner;
    let ji = column - jo * p.n_inner;
    let base = batch * p.c_bs + ji + jo * p.c_no;
    for (var i = 0u; i < ROWS; i++) {
        let m = row0 + i;
        if (m >= p.m) {
            return;
        }
        let idx = base + m * p.c_ms;
        var v = acc[i / 4u][i % 4u];
        if (p.accumulate != 0u) {
            v += c[idx];
        }
        c[idx] = epilogue(v, m, ji, idx);
    }
}

@compute @workgroup_size(64)
fn matmul_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_id) sub: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let batch = wg.z / p.col_folds;
    let row0 = wg.y * ROWS;
    let col0 = (((wg.z % p.col_folds) * groups.x + wg.x) * SUBGROUPS + sub) * (2u * LANES);
    if (col0 >= p.n) {
        return; // a tile past the last column: the whole subgroup leaves
    }
    // Rows and columns past the edges are clamped: they load real elements, and their results
    // are never stored. Every lane stays active, so the broadcasts read defined values.
    let a_lo = batch * p.a_bs + min(row0 + lane, p.m - 1u) * p.a_ms;
    let a_hi = batch * p.a_bs + min(row0 + LANES + lane, p.m - 1u) * p.a_ms;
    let col_a = col0 + lane;
    let col_b = col_a + LANES;
    let na = min(col_a, p.n - 1u);
    let nb = min(col_b, p.n - 1u);
    let ja = na / p.n_inner;
    let jb = nb / p.n_inner;
    let ia = na - ja * p.n_inner;
    let ib = nb - jb * p.n_inner;
    let b_a = batch * p.b_bs + ia * p.b_ns + ja * p.b_no;
    let b_b = batch * p.b_bs + ib * p.b_ns + jb * p.b_no;

    var t = Tile();
    var sum_lo = 0.0; // rows lane and 8 + lane of A, summed over r and k
    var sum_hi = 0.0;
    let quads = min(4u, (p.m - row0 + 3u) / 4u); // fours of the tile's rows inside A
    for (var r = 0u; r < p.reduce; r++) {
        var ak = r * p.a_rs;
        if (p.b_view == 0u) {
            var bk = r * p.b_rs;
            for (var k = 0u; k < p.k; k++) {
                let lo = a[a_lo + ak];
                var hi = 0.0;
                if (quads > 2u) {
                    hi = a[a_hi + ak];
                }
                t = accumulate(t, quads, lo, hi, b[b_a + bk], b[b_b + bk]);
                sum_lo += lo;
                sum_hi += hi;
                ak += p.a_ks;
                bk += p.b_ks;
            }
        } else {
            let oa = column_origin(batch, r, ia, ja);
            let ob = column_origin(batch, r, ib, jb);
            var tap = tap_at(0u);
            for (var k = 0u; k < p.k; k++) {
                let lo = a[a_lo + ak];
                var hi = 0.0;
                if (quads > 2u) {
                    hi = a[a_hi + ak];
                }
                t = accumulate(t, quads, lo, hi, column_value(oa, tap), column_value(ob, tap));
                sum_lo += lo;
                sum_hi += hi;
                tap = tap_next(tap);
                ak += p.a_ks;
            }
        }
    }
    if (p.row_sums != 0u && col0 == 0u) {
        if (row0 + lane < p.m) {
            sums[batch * p.m + row0 + lane] = sum_lo;
        }
        if (row0 + LANES + lane < p.m) {
            sums[batch * p.m + row0 + LANES + lane] = sum_hi;
        }
    }
    if (col_a < p.n) {
        store_column(array(t.ca0, t.ca1, t.ca2, t.ca3), row0, col_a, batch);
    }
    if (col_b < p.n) {
        store_column(array(t.cb0, t.cb1, t.cb2, t.cb3), row0, col_b, batch);
    }
}
