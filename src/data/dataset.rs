//! The in-memory data set the trainer sees: images (kept as u8 when the source is u8,
//! normalised only at batch time), integer labels and per-channel normalisation.
use rayon::prelude::*;

use super::labels::check_labels;
use crate::error::DataError;

/// Image pixels, NCHW, contiguous.
#[derive(Clone, Debug)]
pub enum Pixels {
    /// 0..=255, scaled to [0, 1] before normalisation.
    U8(Vec<u8>),
    /// Used as stored, then normalised.
    F32(Vec<f32>),
}

impl Pixels {
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

impl ImageShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageShape {
            channels,
            height,
            width,
        }
    }

    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Per-channel mean and standard deviation of the (u8: scaled to [0, 1]) pixel values.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Self {
        Normalization { mean, std }
    }
    pub fn fashion_mnist() -> Self {
        Self::new(vec![0.2860], vec![0.3530])
    }
    pub fn mnist() -> Self {
        Self::new(vec![0.1307], vec![0.3081])
    }
    pub fn cifar10() -> Self {
        Self::new(vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616])
    }
    pub fn cifar100() -> Self {
        Self::new(vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762])
    }

    /// Mean and population standard deviation per channel over all images.
    pub fn compute(pixels: &Pixels, shape: ImageShape) -> Self {
        match pixels {
            Pixels::U8(v) => Self::compute_u8(v, shape),
            Pixels::F32(v) => channel_stats(v, shape, |x| x as f64),
        }
    }

    pub(crate) fn compute_u8(data: &[u8], shape: ImageShape) -> Self {
        channel_stats(data, shape, |x| x as f64 / 255.0)
    }

    fn validate(&self, channels: usize, origin: &str) -> Result<(), DataError> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(DataError::invalid(
                format!("normalization of {origin}"),
                format!("{} means, {} stds", self.mean.len(), self.std.len()),
                format!("one mean and one std per channel ({channels})"),
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::invalid(
                format!("normalization std of {origin}"),
                s,
                "a finite std > 0 (are all images constant?)",
            ));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(DataError::invalid(
                format!("normalization mean of {origin}"),
                m,
                "a finite mean",
            ));
        }
        Ok(())
    }
}

fn channel_stats<T: Copy + Sync>(
    data: &[T],
    shape: ImageShape,
    value: impl Fn(T) -> f64 + Sync,
) -> Normalization {
    let plane = shape.height * shape.width;
    let c = shape.channels;
    // Per-image sums in f64, reduced in a fixed tree order by rayon (deterministic for a given
    // thread count is not guaranteed, so sums are per image first and then added in order).
    let per_image: Vec<Vec<(f64, f64)>> = data
        .par_chunks(shape.numel().max(1))
        .map(|img| {
            (0..c)
                .map(|ch| {
                    img[ch * plane..(ch + 1) * plane]
                        .iter()
                        .fold((0.0, 0.0), |(s, q), &x| {
                            let v = value(x);
                            (s + v, q + v * v)
                        })
                })
                .collect()
        })
        .collect();
    let count = (per_image.len() * plane).max(1) as f64;
    let mut mean = Vec::with_capacity(c);
    let mut std = Vec::with_capacity(c);
    for ch in 0..c {
        let (s, q) = per_image
            .iter()
            .fold((0.0, 0.0), |(s, q), img| (s + img[ch].0, q + img[ch].1));
        let m = s / count;
        mean.push(m as f32);
        std.push((q / count - m * m).max(0.0).sqrt() as f32);
    }
    Normalization { mean, std }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    name: String,
    shape: ImageShape,
    pixels: Pixels,
    labels: Vec<u32>,
    num_classes: usize,
    normalization: Normalization,
}

impl Dataset {
    /// Checks that pixel count, labels and normalisation agree; `name` appears in errors.
    pub fn new(
        name: impl Into<String>,
        shape: ImageShape,
        pixels: Pixels,
        labels: Vec<u32>,
        num_classes: usize,
        normalization: Normalization,
    ) -> Result<Self, DataError> {
        let name = name.into();
        if shape.numel() == 0 {
            return Err(DataError::invalid(
                format!("image shape of {name}"),
                shape.to_string(),
                "non-zero channels, height and width",
            ));
        }
        if pixels.len() != labels.len() * shape.numel() {
            return Err(DataError::invalid(
                format!("pixel count of {name}"),
                pixels.len(),
                format!(
                    "{} labels x {}x{}x{} = {}",
                    labels.len(),
                    shape.channels,
                    shape.height,
                    shape.width,
                    labels.len() * shape.numel()
                ),
            ));
        }
        if num_classes == 0 {
            return Err(DataError::invalid(
                format!("number of classes of {name}"),
                0,
                "at least 1",
            ));
        }
        check_labels(&name, labels.iter().map(|&l| l as i64), num_classes)?;
        normalization.validate(shape.channels, &name)?;
        Ok(Dataset {
            name,
            shape,
            pixels,
            labels,
            num_classes,
            normalization,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn shape(&self) -> ImageShape {
        self.shape
    }
    pub fn channels(&self) -> usize {
        self.shape.channels
    }
    pub fn height(&self) -> usize {
        self.shape.height
    }
    pub fn width(&self) -> usize {
        self.shape.width
    }
    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    pub fn normalization(&self) -> &Normalization {
        &self.normalization
    }

    /// Replaces the normalisation (e.g. a user-given one); checked like in `new`.
    pub fn with_normalization(mut self, normalization: Normalization) -> Result<Self, DataError> {
        normalization.validate(self.shape.channels, &self.name)?;
        self.normalization = normalization;
        Ok(self)
    }

    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}
