//! Field checks shared by the configs: each error names the field and the value.
use crate::{Error, Result};

pub fn positive(field: &str, v: f64) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(field, v, "a positive number"))
    }
}

pub fn non_negative(field: &str, v: f64) -> Result<()> {
    if v >= 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(field, v, "a non-negative number"))
    }
}

pub fn fraction(field: &str, v: f64) -> Result<()> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(field, v, "a number in [0, 1)"))
    }
}

pub fn at_least_one(field: &str, v: usize) -> Result<()> {
    if v >= 1 {
        Ok(())
    } else {
        Err(Error::invalid(field, v, "at least 1"))
    }
}

/// Refuse a network whose size bound (see [`crate::space::SizeBound`]) cannot fit in
/// `limit` bytes (default: the memory available now), before anything is allocated. `what`
/// names the network; `batch` is the images a step holds (0: the weights only).
pub fn fits_in_memory(
    bound: crate::space::SizeBound,
    what: &str,
    batch: usize,
    limit: Option<u64>,
) -> Result<()> {
    use crate::info::{available_memory, gib};
    let need = if batch == 0 {
        bound.weight_bytes()
    } else {
        bound.step_bytes(batch)
    };
    let have = limit.unwrap_or_else(available_memory);
    if have > 0 && need > have {
        return Err(Error::invalid(
            "network size",
            what,
            format!(
                "a network that fits in memory: it needs at least {} ({} parameters{}) but {} {}; \
                 choose fewer layers or channels{}",
                gib(need),
                bound.parameters,
                if batch == 0 {
                    String::new()
                } else {
                    format!(" and the activations of a batch of {batch}")
                },
                gib(have),
                if limit.is_some() {
                    "is the limit"
                } else {
                    "is available"
                },
                if batch == 0 {
                    ""
                } else {
                    " or a smaller batch"
                },
            ),
        ));
    }
    Ok(())
}
