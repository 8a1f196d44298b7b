//! The sliding window that convolutions and pools share: output size, validation, and the walk
//! over a window's taps that their CPU references use.

/// A kh×kw window moved over an h×w plane at `stride`, with `pad` zeros on each side (floor
/// mode: a window never starts past the padded plane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Window {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }

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
}
