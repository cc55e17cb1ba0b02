//! Per-image augmentation and normalisation into f32, in the order of the DARTS/torchvision
//! pipeline: random crop of the zero-padded image, horizontal flip, normalise, cutout
//! (cutout zeroes the normalised values, as the DARTS `Cutout` does after `Normalize`).
use super::dataset::{ImageShape, Normalization, Pixels};
use crate::rng::{Rng, PURPOSE_AUGMENT};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Augment {
    /// Zero padding on each side before a random crop back to the original size; 0 = off.
    pub crop_padding: usize,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
    /// Side of the square zeroed at a random centre (DARTS cutout); 0 = off.
    pub cutout: usize,
}

impl Augment {
    pub fn none() -> Self {
        Augment::default()
    }

    pub fn is_active(&self) -> bool {
        self.crop_padding > 0 || self.flip || self.cutout > 0
    }

    /// The random draws for one sample: a pure function of (seed, epoch, position).
    pub(crate) fn draw(&self, shape: ImageShape, seed: u64, epoch: u64, position: u64) -> Draw {
        let mut rng = Rng::from_key(&[seed, PURPOSE_AUGMENT, epoch, position]);
        let p = self.crop_padding;
        // Always consume the same draws so that enabling one option does not shift another.
        let oy = rng.below(2 * p + 1);
        let ox = rng.below(2 * p + 1);
        let flip = rng.coin() && self.flip;
        let cy = rng.below(shape.height);
        let cx = rng.below(shape.width);
        let cut = (self.cutout > 0).then(|| {
            let half = self.cutout / 2;
            (
                cy.saturating_sub(half),
                (cy + half).min(shape.height),
                cx.saturating_sub(half),
                (cx + half).min(shape.width),
            )
        });
        Draw {
            dy: oy as isize - p as isize,
            dx: ox as isize - p as isize,
            flip,
            cut,
        }
    }
}

/// Source offset of the crop, flip, and the cutout rectangle (y0, y1, x0, x1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Draw {
    dy: isize,
    dx: isize,
    flip: bool,
    cut: Option<(usize, usize, usize, usize)>,
}

/// Normalisation precomputed for fast per-pixel use, one entry per channel.
pub(crate) enum Normalizer {
    /// u8 pixels: a table of (v / 255 - mean) / std.
    Table(Vec<Lut>),
    /// f32 pixels: (v - mean) * (1 / std).
    Affine(Vec<Affine>),
}

pub(crate) struct Lut(Box<[f32; 256]>);
pub(crate) struct Affine {
    mean: f32,
    inv_std: f32,
}

/// Maps one stored pixel value to its normalised f32.
trait PixelMap<T> {
    fn map(&self, v: T) -> f32;
}

impl PixelMap<u8> for Lut {
    #[inline(always)]
    fn map(&self, v: u8) -> f32 {
        self.0[v as usize]
    }
}

impl PixelMap<f32> for Affine {
    #[inline(always)]
    fn map(&self, v: f32) -> f32 {
        (v - self.mean) * self.inv_std
    }
}

impl Normalizer {
    pub fn new(pixels: &Pixels, norm: &Normalization) -> Self {
        let channels = norm.mean.iter().zip(&norm.std);
        match pixels {
            Pixels::U8(_) => Normalizer::Table(
                channels
                    .map(|(&m, &s)| {
                        let mut t = Box::new([0f32; 256]);
                        for (v, e) in t.iter_mut().enumerate() {
                            *e = (v as f32 / 255.0 - m) / s;
                        }
                        Lut(t)
                    })
                    .collect(),
            ),
            Pixels::F32(_) => Normalizer::Affine(
                channels
                    .map(|(&mean, &s)| Affine {
                        mean,
                        inv_std: 1.0 / s,
                    })
                    .collect(),
            ),
        }
    }
}

/// Writes image `index` of `pixels`, augmented by `draw` (identity if `None`), into `out`.
pub(crate) fn render(
    pixels: &Pixels,
    norm: &Normalizer,
    shape: ImageShape,
    index: usize,
    draw: Option<Draw>,
    out: &mut [f32],
) {
    let n = shape.numel();
    match (pixels, norm) {
        (Pixels::U8(px), Normalizer::Table(t)) => {
            render_with(&px[index * n..(index + 1) * n], shape, draw, out, t)
        }
        (Pixels::F32(px), Normalizer::Affine(a)) => {
            render_with(&px[index * n..(index + 1) * n], shape, draw, out, a)
        }
        // The normaliser is always built from the same pixels.
        _ => unreachable!("normaliser built for another pixel type"),
    }
}

fn render_with<T: Copy + Default, M: PixelMap<T>>(
    img: &[T],
    shape: ImageShape,
    draw: Option<Draw>,
    out: &mut [f32],
    maps: &[M],
) {
    let (h, w) = (shape.height, shape.width);
    let plane = h * w;
    let planes = img.chunks_exact(plane).zip(out.chunks_exact_mut(plane));
    let Some(d) = draw else {
        for ((src, dst), m) in planes.zip(maps) {
            for (o, &v) in dst.iter_mut().zip(src) {
                *o = m.map(v);
            }
        }
        return;
    };
    // Output columns x whose source column (x, or w-1-x when flipped) + dx lies inside.
    let (x_lo, x_hi) = if d.flip {
        (
            d.dx.clamp(0, w as isize) as usize,
            (w as isize + d.dx).clamp(0, w as isize) as usize,
        )
    } else {
        (
            (-d.dx).clamp(0, w as isize) as usize,
            (w as isize - d.dx).clamp(0, w as isize) as usize,
        )
    };
    let x_hi = x_hi.max(x_lo);
    for ((src, dst), m) in planes.zip(maps) {
        // Padding is zero in raw pixel space, as torchvision pads before ToTensor/Normalize.
        let pad = m.map(T::default());
        for (y, row) in dst.chunks_exact_mut(w).enumerate() {
            let sy = y as isize + d.dy;
            if sy < 0 || sy >= h as isize {
                row.fill(pad);
                continue;
            }
            let src_row = &src[sy as usize * w..(sy as usize + 1) * w];
            row[..x_lo].fill(pad);
            row[x_hi..].fill(pad);
            let inner = &mut row[x_lo..x_hi];
            let len = inner.len();
            if d.flip {
                // out[x] = src[w - 1 - x + dx]: a reversed run of the source row.
                let s0 = (w as isize - 1 - x_hi as isize + 1 + d.dx) as usize;
                let run = &src_row[s0..s0 + len];
                for (o, &v) in inner.iter_mut().zip(run.iter().rev()) {
                    *o = m.map(v);
                }
            } else {
                let s0 = (x_lo as isize + d.dx) as usize;
                for (o, &v) in inner.iter_mut().zip(&src_row[s0..s0 + len]) {
                    *o = m.map(v);
                }
            }
        }
        if let Some((y0, y1, x0, x1)) = d.cut {
            for row in dst.chunks_exact_mut(w).take(y1).skip(y0) {
                row[x0..x1].fill(0.0);
            }
        }
    }
}

/// Augmentation settings given explicitly; the rest follows the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentOverrides {
    pub crop_padding: Option<usize>,
    pub flip: Option<bool>,
    pub cutout: Option<usize>,
}

impl AugmentOverrides {
    /// These settings on top of `default`.
    pub fn resolve(&self, default: Augment) -> Augment {
        Augment {
            crop_padding: self.crop_padding.unwrap_or(default.crop_padding),
            flip: self.flip.unwrap_or(default.flip),
            cutout: self.cutout.unwrap_or(default.cutout),
        }
    }
}

impl From<Augment> for AugmentOverrides {
    /// Every part given: how a run's config records what it resolved to.
    fn from(a: Augment) -> Self {
        AugmentOverrides {
            crop_padding: Some(a.crop_padding),
            flip: Some(a.flip),
            cutout: Some(a.cutout),
        }
    }
}
