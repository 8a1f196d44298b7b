
// ---- prelude/matmul_params.wgsl, joined by shaders/src/lib.rs to matmul.wgsl and
// matmul_subgroup.wgsl: their parameters (engine::ops::matmul::MatmulParams), bindings, the
// implicit column-matrix view of B and the epilogue.
struct MatmulParams {
    m: u32, n: u32, k: u32, reduce: u32,
    a_ms: u32, a_ks: u32, a_rs: u32, a_bs: u32,
    b_ks: u32, b_ns: u32, b_rs: u32, b_bs: u32,
    c_ms: u32, c_bs: u32, accumulate: u32, n_inner: u32,
    b_no: u32, c_no: u32, col_folds: u32, b_view: u32,
    c: u32, h: u32, w: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, ow: u32,
    bias_along: u32, relu: u32, row_sums: u32, oh: u32,
    residual: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;
@group(0) @binding(6) var<storage, read> residual_in: array<f32>;

// With row_sums != 0, sums[batch * m + row] = Σ_r Σ_k A[batch, r](row, k), added in k order:
// a layer's bias gradient (A = dy) beside its weight gradient, written by the tile of column 0.

// With b_view 1 or 2, B is not stored: it is the column matrix of the images in the B binding,
// x [images, c, h, w], as conv.wgsl's im2col would write it (cols[image][row][pos], row =
// (ci, ky, kx), pos = (oy, ox)), read where it lies in x:
//   b_view 1 (convolution):      B(k, j) = cols[jo][k][ji]                     (image jo, row k)
//   b_view 2 (weight gradient):  B(k, j) = cols[batch * reduce + r][ji][k]     (row ji, position k)
// With b_view 3 (input gradient of a stride-1 convolution), the B binding is dy [images, reduce
// output channels, oh, ow] and B[r](k, j) = dy[jo, r, iy + pad - ky, ix + pad - kx] (0 outside),
// tap k = (ky, kx), pixel ji = (iy, ix): the transposed convolution, so dx = Σ_r W[r]ᵀ-taps · B[r]
// needs neither a column buffer nor col2im. (Its walk keeps the pixel in oy, ox.)
// A ColWalk is one entry of that matrix, stepped down B's k by walk_next with no division.
struct ColWalk {
    base: u32, ci: u32, ky: u32, kx: u32, oy: u32, ox: u32,
}

fn walk_start(image: u32, row: u32, pos: u32) -> ColWalk {
    let window = p.kh * p.kw;
    let ci = row / window;
    let tap = row - ci * window;
    let ky = tap / p.kw;
    let oy = pos / p.ow;
    return ColWalk(image * p.c * p.h * p.w, ci, ky, tap - ky * p.kw, oy, pos - oy * p.ow);
}

// The entry B(k, j) of batch `batch`, reduce slice `r`, column j = jo * n_inner + ji.
fn walk_at(batch: u32, r: u32, k: u32, ji: u32, jo: u32) -> ColWalk {
    if (p.b_view == 1u) {
        return walk_start(jo, k, ji);
    }
    if (p.b_view == 3u) {
        let ky = k / p.kw;
        let iy = ji / p.w;
        return ColWalk((jo * p.reduce + r) * p.oh * p.ow, 0u, ky, k - ky * p.kw, iy, ji - iy * p.w);
    }
    return walk_start(batch * p.reduce + r, ji, k);
}

fn walk_value(e: ColWalk) -> f32 {
    if (p.b_view == 3u) {
        let y = i32(e.oy + p.pad) - i32(e.ky);
        let x = i32(e.ox + p.pad) - i32(e.kx);
        if (y < 0 || y >= i32(p.oh) || x < 0 || x >= i32(p.ow)) {
            return 0.0;
        }
        return b[e.base + u32(y) * p.ow + u32(x)];
    }
    let iy = i32(e.oy * p.stride + e.ky) - i32(p.pad);
    let ix = i32(e.ox * p.stride + e.kx) - i32(p.pad);
    if (iy < 0 || iy >= i32(p.h) || ix < 0 || ix >= i32(p.w)) {
        return 0.0;
    }
    return b[e.base + (e.ci * p.h + u32(iy)) * p.w + u32(ix)];
}

// The entry one k further down the same column.
fn walk_next(e: ColWalk) -> ColWalk {
    var n = e;
    if (p.b_view != 2u) {
        n.kx += 1u;
        if (n.kx == p.kw) {
            n.kx = 0u;
            n.ky += 1u;
            if (n.ky == p.kh) {
                n.ky = 0u;
                n.ci += 1u;
            }
        }
    } else {
        n.ox += 1u;
        if (n.ox == p.ow) {
            n.ox = 0u;
            n.oy += 1u;
        }
    }
    return n;
}

// The epilogue of C(m, j), at c[idx]: + bias[m] (bias_along 1: a convolution's channels are C's
// rows) or + bias[ji] (bias_along 2: a linear layer's outputs are C's columns), then
// + residual_in[idx] when residual != 0 (a residual block's skip), then ReLU when relu != 0.
fn epilogue(v: f32, m: u32, ji: u32, idx: u32) -> f32 {
    var out = v;
    if (p.bias_along == 1u) {
        out += bias[m];
    } else if (p.bias_along == 2u) {
        out += bias[ji];
    }
    if (p.residual != 0u) {
        out += residual_in[idx];
    }
    if (p.relu != 0u) {
        out = max(out, 0.0);
    }
    return out;
}
