//! Small host-side maths shared by derivation, the run-file reader and the charts, so that
//! every place that turns raw architecture parameters into weights computes the same numbers.

/// Numerically stable softmax of one row (accumulated in f64).
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = row.iter().map(|&a| f64::from(a - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|&e| (e / sum) as f32).collect()
}

/// PC-DARTS edge normalisation on the host: the betas `[edges]` of a cell whose node `i`
/// has `inputs + i` incoming edges, softmax-normalised over each node's edges.
pub fn softmax_per_node(betas: &[f32], inputs: usize, nodes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(betas.len());
    let mut start = 0;
    for i in 0..nodes {
        out.extend(softmax(&betas[start..start + inputs + i]));
        start += inputs + i;
    }
    out
}

/// Shannon entropy (nats) of a probability row.
pub fn entropy(p: &[f32]) -> f64 {
    p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| -f64::from(x) * f64::from(x).ln())
        .sum()
}

/// The median (the mean of the two middle values for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}
