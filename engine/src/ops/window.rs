//! The sliding window that convolutions and pools share: output size, validation, and the walk
//! over a window's taps that their CPU references use; and the geometry of a convolution and of a
//! pool, each a batch of planes under one window.

use crate::error::{Error, Result};

/// A kh×kw window moved over an h×w plane at `stride`, with `pad` zeros on each side (floor
/// mode: a window never starts past the padded plane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Plane height.
    pub h: usize,
    /// Plane width.
    pub w: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Step between window positions, in both directions.
    pub stride: usize,
    /// Zeros on each side of the plane.
    pub pad: usize,
}

impl Window {
    /// Window positions down the plane (output height); needs [`fits`](Self::fits).
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }

    /// Window positions across the plane (output width); needs [`fits`](Self::fits).
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }

    /// A non-empty window and a non-zero stride that fit the padded plane, so that `oh` and `ow`
    /// are defined and at least 1.
    pub fn fits(&self) -> bool {
        self.stride > 0
            && self.kh > 0
            && self.kw > 0
            && self.h + 2 * self.pad >= self.kh
            && self.w + 2 * self.pad >= self.kw
    }

    /// Calls `visit(ky, kx, pixel)` for every tap of the window at output (oy, ox), row by row:
    /// `pixel` is the tap's index `iy * w + ix` within the plane, or None where it falls on
    /// padding.
    pub fn taps(&self, oy: usize, ox: usize, mut visit: impl FnMut(usize, usize, Option<usize>)) {
        for ky in 0..self.kh {
            let iy = (oy * self.stride + ky).checked_sub(self.pad).filter(|&iy| iy < self.h);
            for kx in 0..self.kw {
                let ix = (ox * self.stride + kx).checked_sub(self.pad).filter(|&ix| ix < self.w);
                visit(ky, kx, iy.zip(ix).map(|(iy, ix)| iy * self.w + ix));
            }
        }
    }

    /// Calls `visit(plane, oy, ox, ky, kx, pixel)` for every tap of every window position over
    /// `planes` planes of h×w stored one after another: `pixel` is the tap's index among all of
    /// them, or None where it falls on padding. The CPU references of conv and the pools walk
    /// their windows through this.
    pub fn for_each_tap(&self, planes: usize, mut visit: impl FnMut(usize, usize, usize, usize, usize, Option<usize>)) {
        let (oh, ow) = (self.oh(), self.ow());
        for plane in 0..planes {
            let base = plane * self.h * self.w;
            for oy in 0..oh {
                for ox in 0..ow {
                    self.taps(oy, ox, |ky, kx, pixel| visit(plane, oy, ox, ky, kx, pixel.map(|p| base + p)));
                }
            }
        }
    }
}

/// Input [n, c, h, w] convolved with the window's kh×kw kernel at its stride and padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// The kernel slid over each h×w plane.
    pub window: Window,
}

impl ConvGeometry {
    /// Output height.
    pub fn oh(&self) -> usize {
        self.window.oh()
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        self.window.ow()
    }
    /// A 1×1 kernel at stride 1 without padding: the column matrix is the input itself.
    pub fn is_pointwise(&self) -> bool {
        let w = &self.window;
        w.kh == 1 && w.kw == 1 && w.stride == 1 && w.pad == 0
    }
    /// Rows of one image's column matrix: C·KH·KW.
    pub fn col_rows(&self) -> usize {
        self.c * self.window.kh * self.window.kw
    }
    /// Elements of the input, `[n, c, h, w]`.
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.window.h * self.window.w
    }
    /// Elements of the column matrices of the whole batch, `[n, C·KH·KW, OH·OW]`.
    pub fn cols_len(&self) -> usize {
        self.n * self.col_rows() * self.oh() * self.ow()
    }
    /// Refuses a kernel that does not fit the padded input (or a zero stride or kernel side).
    pub fn validate(&self) -> Result<()> {
        let w = &self.window;
        if !w.fits() {
            return Err(Error::Shape(format!(
                "a {}×{} kernel at stride {} does not fit a padded {}×{} input",
                w.kh, w.kw, w.stride, w.h, w.w
            )));
        }
        Ok(())
    }
}

/// `planes` = N·C planes of h×w pooled by the window (square, floor mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// N·C planes pooled.
    pub planes: usize,
    /// The k×k window slid over each plane.
    pub window: Window,
}

impl PoolGeometry {
    /// `planes` planes of h×w pooled by a k×k window at `stride` with `pad` zeros each side.
    pub fn new(planes: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> PoolGeometry {
        PoolGeometry { planes, window: Window { h, w, kh: k, kw: k, stride, pad } }
    }
    /// Output height.
    pub fn oh(&self) -> usize {
        self.window.oh()
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        self.window.ow()
    }
    /// Elements of the input, `[planes, h, w]`.
    pub fn input_len(&self) -> usize {
        self.planes * self.window.h * self.window.w
    }
    /// Elements of the output (and argmax), `[planes, oh, ow]`.
    pub fn output_len(&self) -> usize {
        self.planes * self.oh() * self.ow()
    }
    /// The window fits, and padding is at most half of it (as PyTorch requires), so every window
    /// holds at least one pixel.
    pub fn validate(&self) -> Result<()> {
        let w = &self.window;
        if !w.fits() || w.kh != w.kw || 2 * w.pad > w.kh {
            return Err(Error::Shape(format!(
                "a {0}×{0} pool at stride {1} with padding {2} does not fit a {3}×{4} input (padding may be at most half the window)",
                w.kh, w.stride, w.pad, w.h, w.w
            )));
        }
        Ok(())
    }
    /// Visits every in-plane tap of every window: `visit(output index, input index)`. The CPU
    /// references of both pools walk their windows through it.
    pub(crate) fn taps(&self, mut visit: impl FnMut(usize, usize)) {
        let (oh, ow) = (self.oh(), self.ow());
        self.window.for_each_tap(self.planes, |plane, oy, ox, _, _, pixel| {
            if let Some(i) = pixel {
                visit((plane * oh + oy) * ow + ox, i);
            }
        });
    }
}
