
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
// needs neither a column buffer nor col2im.
// An entry's address splits in two: B(k, j) = x[origin.base + tap.offset] when the pixel
// (origin.y + tap.y, origin.x + tap.x) lies inside the plane (h × w; b_view 3: oh × ow), else 0.
// The column's origin holds what depends on j (its image and output position, or its im2col row),
// the tap what depends on k only, the same in every lane and every column of a tile; tap_next
// steps it down B's k with no division, so a lane walking several columns updates one tap.
struct ColumnOrigin {
    base: i32, y: i32, x: i32,
}

struct Tap {
    offset: i32, y: i32, x: i32,
}

// The origin of column j = jo * n_inner + ji of batch `batch`, reduce slice `r`.
fn column_origin(batch: u32, r: u32, ji: u32, jo: u32) -> ColumnOrigin {
    let pad = i32(p.pad);
    if (p.b_view == 1u) {
        // Output position ji = (oy, ox) of image jo.
        let oy = ji / p.ow;
        let y = i32(oy * p.stride) - pad;
        let x = i32((ji - oy * p.ow) * p.stride) - pad;
        return ColumnOrigin(i32(jo * p.c * p.h * p.w) + y * i32(p.w) + x, y, x);
    }
    if (p.b_view == 2u) {
        // im2col row ji = (ci, ky, kx) of image batch * reduce + r.
        let window = p.kh * p.kw;
        let ci = ji / window;
        let tap = ji - ci * window;
        let ky = tap / p.kw;
        let y = i32(ky) - pad;
        let x = i32(tap - ky * p.kw) - pad;
        let plane = ((batch * p.reduce + r) * p.c + ci) * p.h * p.w;
        return ColumnOrigin(i32(plane) + y * i32(p.w) + x, y, x);
    }
    // b_view 3: pixel ji = (iy, ix) of dy's plane (image jo, output channel r).
    let iy = ji / p.w;
    let y = i32(iy) + pad;
    let x = i32(ji - iy * p.w) + pad;
    return ColumnOrigin(i32((jo * p.reduce + r) * p.oh * p.ow) + y * i32(p.ow) + x, y, x);
}

// The tap of row k of B.
fn tap_at(k: u32) -> Tap {
    if (p.b_view == 1u) {
        // k = (ci, ky, kx)
        let window = p.kh * p.kw;
        let ci = k / window;
        let tap = k - ci * window;
        let ky = tap / p.kw;
        let kx = tap - ky * p.kw;
        return Tap(i32(ci * p.h * p.w + ky * p.w + kx), i32(ky), i32(kx));
    }
    if (p.b_view == 2u) {
        // k = output position (oy, ox)
        let oy = k / p.ow;
        let y = oy * p.stride;
        let x = (k - oy * p.ow) * p.stride;
        return Tap(i32(y * p.w + x), i32(y), i32(x));
    }
    // b_view 3: k = (ky, kx), read at dy's pixel (iy + pad - ky, ix + pad - kx)
    let ky = k / p.kw;
    let kx = k - ky * p.kw;
    return Tap(-i32(ky * p.ow + kx), -i32(ky), -i32(kx));
}

// The tap of row k + 1, from that of row k.
fn tap_next(t: Tap) -> Tap {
    var n = t;
    if (p.b_view == 1u) {
        n.x += 1;
        n.offset += 1;
        if (n.x == i32(p.kw)) {
            n.x = 0;
            n.y += 1;
            n.offset += i32(p.w - p.kw);
            if (n.y == i32(p.kh)) {
                n.y = 0;
                n.offset += i32((p.h - p.kh) * p.w);
            }
        }
    } else if (p.b_view == 2u) {
        let s = i32(p.stride);
        n.x += s;
        n.offset += s;
        if (n.x == i32(p.ow) * s) {
            n.x = 0;
            n.y += s;
            n.offset += s * i32(p.w) - i32(p.ow) * s;
        }
    } else {
        n.x -= 1;
        n.offset -= 1;
        if (n.x == -i32(p.kw)) {
            n.x = 0;
            n.y -= 1;
            n.offset += i32(p.kw) - i32(p.ow);
        }
    }
    return n;
}

// B(k, j) for the column's origin and row k's tap.
fn column_value(o: ColumnOrigin, t: Tap) -> f32 {
    var rows = p.h;
    var cols = p.w;
    if (p.b_view == 3u) {
        rows = p.oh;
        cols = p.ow;
    }
    if (u32(o.y + t.y) >= rows || u32(o.x + t.x) >= cols) {
        return 0.0; // padding (negative coordinates wrap to large unsigned ones)
    }
    return b[u32(o.base + t.offset)];
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
