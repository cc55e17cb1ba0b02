//! Chain spaces (MobileNet-style stages of MBConv layers) as plain data: the space, one
//! layer's choices, discrete architectures and their exact costs.
mod arch;
mod choice;
mod cost;
mod sampling;
mod sharing;
mod spec;

pub use arch::ChainArch;
pub use choice::{Activation, Choice};
pub use cost::{
    arch_cost, extreme_arch, fixed_cost, layer_cost, make_divisible, num_architectures,
    se_channels, supernet_cost, Cost, ImageShape,
};
pub use sampling::{crossover_arch, mutate_arch, uniform_arch};
pub use sharing::{elastic_supernet_params, kernel_transforms, largest_choice, WeightSharing};
pub use spec::{
    conv_out, ChainKind, ChainNetwork, ChainSpace, HeadSpec, LayerPlan, StageSpec, StemSpec,
};
