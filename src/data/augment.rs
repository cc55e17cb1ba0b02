//! Per-image augmentation and normalisation into f32, in the order of the DARTS/torchvision
//! pipeline: random crop of the zero-padded image, horizontal flip, normalise, cutout
//! (cutout zeroes the normalised values, as the DARTS `Cutout` does after `Normalize`).
use super::dataset::{ImageShape, Normalization, Pixels};
use super::rng::{Rng, PURPOSE_AUGMENT};

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

/// Normalisation precomputed for fast per-pixel use.
pub(crate) enum Normalizer {
    /// 256 entries per channel: (v / 255 - mean) / std.
    Table(Vec<f32>),
    /// Per channel (mean, 1 / std).
    Affine(Vec<(f32, f32)>),
}

impl Normalizer {
    pub fn new(pixels: &Pixels, norm: &Normalization) -> Self {
        match pixels {
            Pixels::U8(_) => Normalizer::Table(
                norm.mean
                    .iter()
                    .zip(&norm.std)
                    .flat_map(|(&m, &s)| (0..256).map(move |v| (v as f32 / 255.0 - m) / s))
                    .collect(),
            ),
            Pixels::F32(_) => Normalizer::Affine(
                norm.mean
                    .iter()
                    .zip(&norm.std)
                    .map(|(&m, &s)| (m, 1.0 / s))
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
            let img = &px[index * n..(index + 1) * n];
            render_with(img, shape, draw, out, |ch, v| t[ch * 256 + v as usize]);
        }
        (Pixels::F32(px), Normalizer::Affine(a)) => {
            let img = &px[index * n..(index + 1) * n];
            render_with(img, shape, draw, out, |ch, v| (v - a[ch].0) * a[ch].1);
        }
        // The normaliser is always built from the same pixels.
        _ => unreachable!("normaliser built for another pixel type"),
    }
}

fn render_with<T: Copy + Default>(
    img: &[T],
    shape: ImageShape,
    draw: Option<Draw>,
    out: &mut [f32],
    norm: impl Fn(usize, T) -> f32,
) {
    let (h, w) = (shape.height, shape.width);
    let plane = h * w;
    let Some(d) = draw else {
        for ch in 0..shape.channels {
            let range = ch * plane..(ch + 1) * plane;
            for (o, &v) in out[range.clone()].iter_mut().zip(&img[range]) {
                *o = norm(ch, v);
            }
        }
        return;
    };
    for ch in 0..shape.channels {
        // Padding is zero in raw pixel space, as torchvision pads before ToTensor/Normalize.
        let pad = norm(ch, T::default());
        let src = &img[ch * plane..(ch + 1) * plane];
        let dst = &mut out[ch * plane..(ch + 1) * plane];
        for y in 0..h {
            let row = &mut dst[y * w..(y + 1) * w];
            let sy = y as isize + d.dy;
            if sy < 0 || sy >= h as isize {
                row.fill(pad);
                continue;
            }
            let src_row = &src[sy as usize * w..(sy as usize + 1) * w];
            for (x, o) in row.iter_mut().enumerate() {
                let xx = if d.flip { w - 1 - x } else { x };
                let sx = xx as isize + d.dx;
                *o = if sx < 0 || sx >= w as isize {
                    pad
                } else {
                    norm(ch, src_row[sx as usize])
                };
            }
        }
        if let Some((y0, y1, x0, x1)) = d.cut {
            for y in y0..y1 {
                dst[y * w + x0..y * w + x1].fill(0.0);
            }
        }
    }
}
