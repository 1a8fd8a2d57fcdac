//! Inference over a whole dataset in fixed-size chunks, and accuracies from the predictions.

use tch::{Kind, Tensor};

use super::batches::DeviceDataset;

/// Images per inference chunk.
pub const EVAL_BATCH: usize = 512;

/// Applies `forward` (images -> rows) to all images in order, in inference mode; `[N, ...]`.
pub fn map_all(data: &DeviceDataset, forward: impl Fn(&Tensor) -> Tensor) -> Tensor {
    crate::accel::inference(|| {
        let chunks: Vec<Tensor> = (0..data.len())
            .step_by(EVAL_BATCH)
            .map(|start| forward(&data.images_range(start, EVAL_BATCH.min(data.len() - start))))
            .collect();
        Tensor::cat(&chunks, 0)
    })
}

/// The predicted class of every image, `[N]` i64.
pub fn predict(data: &DeviceDataset, logits: impl Fn(&Tensor) -> Tensor) -> Tensor {
    map_all(data, |x| logits(x).argmax(-1, false))
}

/// Share of labelled images predicted right; `None` when no image is labelled.
pub fn accuracy(predictions: &Tensor, labels: &Tensor) -> Option<f64> {
    let labelled = labels.ge(0);
    let count = labelled.sum(Kind::Int64).int64_value(&[]);
    (count > 0).then(|| {
        let correct = predictions
            .eq_tensor(labels)
            .logical_and(&labelled)
            .sum(Kind::Int64)
            .int64_value(&[]);
        correct as f64 / count as f64
    })
}

/// Accuracy of each class `0..classes` (`None` for a class without images).
pub fn per_class_accuracy(
    predictions: &Tensor,
    labels: &Tensor,
    classes: usize,
) -> Vec<Option<f64>> {
    (0..classes as i64)
        .map(|class| {
            let mask = labels.eq(class);
            let count = mask.sum(Kind::Int64).int64_value(&[]);
            (count > 0).then(|| {
                let correct = predictions
                    .eq(class)
                    .logical_and(&mask)
                    .sum(Kind::Int64)
                    .int64_value(&[]);
                correct as f64 / count as f64
            })
        })
        .collect()
}

/// `confusion[true][predicted]` counts over labelled images; `predictions` and `labels` are both
/// `[N]`, anything else an error.
pub fn confusion_matrix(
    predictions: &Tensor,
    labels: &Tensor,
    classes: usize,
) -> Result<Vec<Vec<u64>>, tch::TchError> {
    let predicted = Vec::<i64>::try_from(predictions.to_device(tch::Device::Cpu))?;
    let truth = Vec::<i64>::try_from(labels.to_device(tch::Device::Cpu))?;
    if predicted.len() != truth.len() {
        return Err(tch::TchError::Shape(format!(
            "{} predictions for {} labels",
            predicted.len(),
            truth.len()
        )));
    }
    let mut matrix = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(&predicted) {
        if (0..classes as i64).contains(&t) && (0..classes as i64).contains(&p) {
            matrix[t as usize][p as usize] += 1;
        }
    }
    Ok(matrix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracies_skip_unlabelled_images() {
        let predictions = Tensor::from_slice(&[0i64, 1, 1, 2]);
        let labels = Tensor::from_slice(&[0i64, 1, 0, -1]);
        assert_eq!(accuracy(&predictions, &labels), Some(2.0 / 3.0));
        assert_eq!(
            per_class_accuracy(&predictions, &labels, 3),
            [Some(0.5), Some(1.0), None]
        );
        assert_eq!(
            confusion_matrix(&predictions, &labels, 3).unwrap()[0],
            [1, 1, 0]
        );
        let matrix = Tensor::from_slice(&[0i64, 1, 1, 2]).view([2, 2]);
        assert!(confusion_matrix(&matrix, &labels, 3).is_err());
        let short = Tensor::from_slice(&[0i64, 1]);
        assert!(confusion_matrix(&short, &labels, 3).is_err());
    }
}
