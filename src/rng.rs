//! A counter-based random generator: every draw is a pure function of a key such as
//! (seed, epoch, position, purpose), so shuffles and augmentations do not depend on thread
//! scheduling or on where iteration started, and a run resumes bit-identically.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Purposes, so that draws for different jobs from the same (seed, epoch) never coincide.
pub const PURPOSE_SHUFFLE: u64 = 0x5348_5546;
pub const PURPOSE_AUGMENT: u64 = 0x4155_474D;
pub const PURPOSE_SPLIT: u64 = 0x5350_4C54;
pub const PURPOSE_SYNTHETIC: u64 = 0x5359_4E54;
pub const PURPOSE_STREAM: u64 = 0x5354_524D;
pub const PURPOSE_DROP_PATH: u64 = 0x4452_4F50;
pub const PURPOSE_PROBE: u64 = 0x5052_4F42;
/// Architecture sampling: SPOS paths, GDAS Gumbel noise (weight and alpha half of a step),
/// `supernet sample`, evolutionary and random search.
pub const PURPOSE_SPOS: u64 = 0x5350_4F53;
pub const PURPOSE_GDAS_WEIGHTS: u64 = 0x4744_5357;
pub const PURPOSE_GDAS_ARCH: u64 = 0x4744_5341;
/// ProxylessNAS: the path of the weight step and the two paths of the architecture step.
pub const PURPOSE_PROXYLESS_WEIGHTS: u64 = 0x5058_4C57;
pub const PURPOSE_PROXYLESS_ARCH: u64 = 0x5058_4C41;
/// ENAS: the controller's sample for the weight step and for the controller step.
pub const PURPOSE_ENAS_WEIGHTS: u64 = 0x454E_5357;
pub const PURPOSE_ENAS_ARCH: u64 = 0x454E_5341;
/// SDARTS-RS: the uniform noise on the mixing weights of a weight step.
pub const PURPOSE_SDARTS: u64 = 0x5344_5254;
pub const PURPOSE_SAMPLE: u64 = 0x534D_504C;
pub const PURPOSE_EVOLVE: u64 = 0x4556_4F4C;
/// The fresh initialisation of zero-cost proxy networks.
pub const PURPOSE_PROXY: u64 = 0x5052_5859;
/// R-DARTS: the start vector of the Hessian power iteration.
pub const PURPOSE_HESSIAN: u64 = 0x4845_5353;
/// DARTS-PT: the order in which edges and nodes are decided.
pub const PURPOSE_PERTURBATION: u64 = 0x5054_5345;

/// The SplitMix64 output function (Steele, Lea, Flood 2014): a strong 64-bit bijective mixer.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a key (order matters) to one 64-bit seed.
pub fn hash_key(key: &[u64]) -> u64 {
    key.iter()
        .fold(GOLDEN, |state, &k| mix(state.wrapping_add(GOLDEN) ^ k))
}

/// SplitMix64 stream started from a hashed key.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn from_key(key: &[u64]) -> Self {
        Rng {
            state: hash_key(key),
        }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for any n < 2^32).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    #[inline]
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Uniform in [0, 1) with 53 bits.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Fisher-Yates shuffle in place, driven by `rng`.
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}
