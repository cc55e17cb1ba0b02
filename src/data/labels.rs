//! Label checks: every label inside the class range the data set declares or implies.
use crate::error::DataError;

/// Checks every label against `0..num_classes`, naming `origin` in the error.
pub(crate) fn check_labels(
    origin: &str,
    labels: impl IntoIterator<Item = i64>,
    num_classes: usize,
) -> Result<(), DataError> {
    for (index, label) in labels.into_iter().enumerate() {
        if label < 0 || label as u64 >= num_classes as u64 {
            return Err(DataError::LabelOutOfRange {
                origin: origin.to_string(),
                index,
                label,
                num_classes,
            });
        }
    }
    Ok(())
}

/// The class count of a data set whose format does not fix it (generic IDX, HDF5): the
/// largest training label + 1, provided every class below it has training examples. A
/// label outside the data set's classes (say one byte of a Fashion-MNIST label file set to
/// 255) would otherwise silently turn a 10-class set into a 256-class one.
pub(crate) fn infer_classes(origin: &str, labels: &[i64]) -> Result<usize, DataError> {
    let Some((index, &max)) = labels
        .iter()
        .enumerate()
        .max_by_key(|&(i, &l)| (l, std::cmp::Reverse(i)))
    else {
        return Ok(1);
    };
    let classes = max as usize + 1;
    let mut seen = vec![false; classes];
    for &l in labels {
        seen[l as usize] = true;
    }
    let missing: Vec<usize> = (0..classes).filter(|&c| !seen[c]).collect();
    if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
        let which = if first == last {
            format!("class {first} has")
        } else {
            format!("{} of the classes {first}..={last} have", missing.len())
        };
        return Err(DataError::Format {
            path: origin.into(),
            message: format!(
                "the labels are not the class indices 0..{}: {which} no training example, \
                 but sample {index} has label {max}; a corrupt label file, or labels that are \
                 not consecutive class indices",
                classes - 1
            ),
        });
    }
    Ok(classes)
}
