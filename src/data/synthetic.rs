//! A small synthetic data set with learnable class structure, for tests only; nothing falls
//! back to it silently.
use super::dataset::{Dataset, ImageShape, Normalization, Pixels};
use crate::error::DataError;
use crate::rng::{Rng, PURPOSE_SYNTHETIC};

impl Dataset {
    /// `n` images of `c x h x w` u8 pixels in `classes` balanced classes (label = i % classes).
    /// Each class has a fixed random template; an image is its template plus per-image
    /// noise, so a small network separates the classes quickly.
    pub fn synthetic(
        n: usize,
        classes: usize,
        c: usize,
        h: usize,
        w: usize,
        seed: u64,
    ) -> Result<Dataset, DataError> {
        if n == 0 || classes == 0 {
            return Err(DataError::invalid(
                "synthetic data set size",
                format!("n = {n}, classes = {classes}"),
                "n >= 1 and classes >= 1",
            ));
        }
        let shape = ImageShape::new(c, h, w);
        let numel = shape.numel();
        let templates: Vec<Vec<u8>> = (0..classes as u64)
            .map(|k| {
                let mut rng = Rng::from_key(&[seed, PURPOSE_SYNTHETIC, 0, k]);
                (0..numel).map(|_| rng.below(256) as u8).collect()
            })
            .collect();
        let mut pixels = Vec::with_capacity(n * numel);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = i % classes;
            let mut rng = Rng::from_key(&[seed, PURPOSE_SYNTHETIC, 1, i as u64]);
            pixels.extend(templates[label].iter().map(|&t| {
                let noise = rng.below(256) as u32;
                ((3 * t as u32 + noise) / 4) as u8
            }));
            labels.push(label as u32);
        }
        let pixels = Pixels::U8(pixels);
        let normalization = Normalization::compute(&pixels, shape);
        Dataset::new(
            format!("synthetic({n}x{c}x{h}x{w}, {classes} classes, seed {seed})"),
            shape,
            pixels,
            labels,
            classes,
            normalization,
        )
    }
}
