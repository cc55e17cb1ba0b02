//! Multi-objective ranking of scored architectures, every objective minimised (pass
//! `-accuracy` for accuracy): Pareto fronts, NSGA-II's fast non-dominated sorting and
//! crowding distance (Deb et al., IEEE TEVC 2002), and its truncation selection. Pure host
//! code on plain numbers.
use std::cmp::Ordering;

/// Whether `a` dominates `b`: no worse in every objective and better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// Rows not dominated by any other row (equal rows do not dominate each other, so
/// duplicates are on the front together).
pub fn front_mask(points: &[Vec<f64>]) -> Vec<bool> {
    (0..points.len())
        .map(|i| !points.iter().any(|q| dominates(q, &points[i])))
        .collect()
}

/// Rows on the Pareto front of accuracy (higher is better) against cost (lower is better).
pub fn pareto_front(accuracy: &[f64], cost: &[f64]) -> Vec<bool> {
    front_mask(&accuracy_cost(accuracy, cost))
}

/// `(accuracy, cost)` pairs as minimised objectives `[-accuracy, cost]`.
pub fn accuracy_cost(accuracy: &[f64], cost: &[f64]) -> Vec<Vec<f64>> {
    accuracy
        .iter()
        .zip(cost)
        .map(|(&a, &c)| vec![-a, c])
        .collect()
}

/// Fast non-dominated sorting: the fronts in order (front 0 is the Pareto front), each a
/// list of row indices in increasing order; every row is in exactly one front.
pub fn non_dominated_sort(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = points.len();
    // dominated[i]: rows i dominates; count[i]: rows that dominate i.
    let mut dominated: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut count = vec![0usize; n];
    for i in 0..n {
        for j in 0..n {
            if dominates(&points[i], &points[j]) {
                dominated[i].push(j);
            } else if dominates(&points[j], &points[i]) {
                count[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated[i] {
                count[j] -= 1;
                if count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(std::mem::replace(&mut current, next));
    }
    fronts
}

/// Crowding distance of each row of one front (`front` indexes `points`), in `front`'s
/// order. Per objective the rows are sorted by value (ties: the order in `front`); the
/// first and last are infinitely far, an inner row adds the gap between its neighbours
/// divided by the objective's range (nothing when the range is 0).
pub fn crowding_distance(points: &[Vec<f64>], front: &[usize]) -> Vec<f64> {
    let mut distance = vec![0.0; front.len()];
    let Some(&first) = front.first() else {
        return distance;
    };
    // One objective at a time: its values in `front`'s order.
    let objectives = (0..points[first].len()).map(|m| front.iter().map(move |&i| points[i][m]));
    for values in objectives {
        add_crowding(&mut distance, &values.collect::<Vec<f64>>());
    }
    distance
}

/// Add one objective's crowding terms (`values` in the front's order) to `distance`.
fn add_crowding(distance: &mut [f64], values: &[f64]) {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let value = |k: usize| values[order[k]];
    let range = value(n - 1) - value(0);
    distance[order[0]] = f64::INFINITY;
    distance[order[n - 1]] = f64::INFINITY;
    if range <= 0.0 {
        return;
    }
    for k in 1..n.saturating_sub(1) {
        distance[order[k]] += (value(k + 1) - value(k - 1)) / range;
    }
}

/// NSGA-II truncation: `k` rows, whole fronts in order, then from the front that does not
/// fit whole its rows of largest crowding distance (ties: the lower row). Returned in the
/// order chosen.
pub fn nsga2_select(points: &[Vec<f64>], k: usize) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(k.min(points.len()));
    for front in non_dominated_sort(points) {
        let room = k - chosen.len();
        if room == 0 {
            break;
        }
        if front.len() <= room {
            chosen.extend(front);
            continue;
        }
        let d = crowding_distance(points, &front);
        let mut order: Vec<usize> = (0..front.len()).collect();
        order.sort_by(|&a, &b| match d[b].partial_cmp(&d[a]) {
            Some(Ordering::Equal) | None => front[a].cmp(&front[b]),
            Some(o) => o,
        });
        chosen.extend(order.into_iter().take(room).map(|i| front[i]));
    }
    chosen
}
