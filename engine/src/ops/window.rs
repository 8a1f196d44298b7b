//! The sliding window that convolutions and pools share: output size, validation, and the walk
//! over a window's taps that their CPU references use.

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
