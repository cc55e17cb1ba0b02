//! `training`: loss and accuracy of the weights (train batches) and of the alphas'
//! validation batches per step (raw and smoothed), and per epoch.
use super::data::ChartData;
use super::style::{self, Mark};
use super::{DrawResult, Drawn, Figure, Output};
use crate::record::RunData;
use crate::record::{EpochRecord, StepRecord};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const LEGEND_H: u32 = 84;
/// At most this many epoch ends are marked.
const EPOCH_LINES: usize = 20;
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(230, 85, 13);

pub(super) fn draw(run: &RunData, out: &Output) -> Result<Drawn> {
    if run.log.steps.is_empty() {
        return Ok(Drawn::Skipped("no training steps recorded yet".into()));
    }
    Ok(Drawn::Files(vec![
        out.render("training", &Training { run })?
    ]))
}

struct Training<'a> {
    run: &'a RunData,
}

/// One quantity (loss or accuracy) for both halves of the data.
struct Quantity {
    title: &'static str,
    axis: &'static str,
    step: fn(&StepRecord) -> (f64, f64),
    epoch: fn(&EpochRecord) -> (f64, f64),
    /// Clamp of the y range (accuracy lies in 0..100).
    bounds: (f64, f64),
}

const LOSS: Quantity = Quantity {
    title: "loss",
    axis: "cross-entropy",
    step: |s| (s.train_loss, s.val_loss),
    epoch: |e| (e.train_loss, e.val_loss),
    bounds: (0.0, f64::INFINITY),
};

const ACCURACY: Quantity = Quantity {
    title: "accuracy",
    axis: "accuracy (%)",
    step: |s| (100.0 * s.train_acc, 100.0 * s.val_acc),
    epoch: |e| (100.0 * e.train_acc, 100.0 * e.val_acc),
    bounds: (0.0, 100.0),
};

impl Training<'_> {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        q: &Quantity,
    ) -> DrawResult<DB> {
        let steps = &self.run.log.steps;
        let epochs = &self.run.log.epochs;
        // x: steps completed, so that an epoch's last step lands on its end.
        let x = |s: &StepRecord| (s.step + 1) as f64;
        let finite = |points: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
            points.into_iter().filter(|p| p.1.is_finite()).collect()
        };
        let train = finite(steps.iter().map(|s| (x(s), (q.step)(s).0)).collect());
        let val = finite(steps.iter().map(|s| (x(s), (q.step)(s).1)).collect());
        let e_train = finite(
            epochs
                .iter()
                .map(|e| (self.run.epoch_end(e.epoch), (q.epoch)(e).0))
                .collect(),
        );
        let e_val = finite(
            epochs
                .iter()
                .map(|e| (self.run.epoch_end(e.epoch), (q.epoch)(e).1))
                .collect(),
        );
        let all = || {
            train
                .iter()
                .chain(&val)
                .chain(&e_train)
                .chain(&e_val)
                .map(|p| p.1)
                .filter(|v| v.is_finite())
        };
        let lo = all().fold(f64::INFINITY, f64::min);
        let hi = all().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.06).max(1e-3);
        let (y0, y1) = ((lo - pad).max(q.bounds.0), (hi + pad).min(q.bounds.1));
        let last = self.run.last_step();
        let digits = super::alphas::decimals(y1 - y0).min(3);
        let mut chart = style::step_chart(
            area,
            q.title,
            style::LABEL + 4.0,
            62 + 11 * digits as u32,
            last,
            (y0, y1),
        )?;
        style::step_mesh(
            &mut chart,
            Some(q.axis),
            (None, None),
            &|y| format!("{y:.digits$}"),
            &self.run.epoch_boundaries(last, EPOCH_LINES),
        )?;
        let window = smoothing_window(steps.len());
        // Dense runs: fainter raw lines, so that the smoothed ones stand out.
        let faint = if steps.len() > 2000 { 0.18 } else { 0.45 };
        for (points, c) in [(&train, TRAIN), (&val, VAL)] {
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                c.mix(faint).stroke_width(1),
            ))?;
        }
        for (points, c) in [(&train, TRAIN), (&val, VAL)] {
            let smoothed = smooth(points, window);
            chart.draw_series(LineSeries::new(
                smoothed.iter().copied(),
                WHITE.mix(0.7).stroke_width(5),
            ))?;
            chart.draw_series(LineSeries::new(smoothed, style::darker(c).stroke_width(3)))?;
        }
        let (dot, tri) = if epochs.len() > 25 { (4, 6) } else { (7, 9) };
        chart.draw_series(e_train.iter().map(|&p| Circle::new(p, dot, TRAIN.filled())))?;
        chart.draw_series(
            e_val
                .iter()
                .map(|&p| TriangleMarker::new(p, tri, VAL.filled())),
        )?;
        Ok(())
    }
}

impl Figure for Training<'_> {
    fn size(&self) -> (u32, u32) {
        (1600, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let window = smoothing_window(self.run.log.steps.len());
        let row = |entries: [(&str, Mark); 3]| entries.map(|(t, m)| (t.to_string(), m));
        let train = row([
            ("train batch, per step", Mark::Faint(TRAIN)),
            ("train, smoothed", Mark::Line(style::darker(TRAIN), 3)),
            ("train, epoch mean", Mark::Dot(TRAIN)),
        ]);
        let val = row([
            ("validation batch (alpha step), per step", Mark::Faint(VAL)),
            ("validation, smoothed", Mark::Line(style::darker(VAL), 3)),
            (
                "validation half, full evaluation per epoch",
                Mark::Triangle(VAL),
            ),
        ]);
        // A training run has no per-step validation; its epochs are scored on the test set.
        let test = [(
            "test set, full evaluation per epoch (train loss includes the auxiliary loss)"
                .to_string(),
            Mark::Triangle(VAL),
        )];
        let val: &[(String, Mark)] = if self.run.log.meta.kind == "train" {
            &test
        } else {
            &val
        };
        let body = style::frame(
            root,
            "training",
            &format!(
                "{}; {} steps, {} epochs done; {}; smoothed: {}",
                self.run.space_note(),
                self.run.log.steps.len(),
                self.run.log.epochs.len(),
                self.run.epoch_note(self.run.last_step(), EPOCH_LINES),
                if window > 1 {
                    format!("centred mean of {window} steps")
                } else {
                    "not (too few steps)".into()
                }
            ),
            LEGEND_H,
            &[&train, val],
        )?;
        let (left, right) = body.split_horizontally(body.dim_in_pixel().0 / 2);
        self.panel(&left, &LOSS)?;
        self.panel(&right, &ACCURACY)
    }
}

/// Steps averaged by the smoothed lines: about 1/40 of the run, odd, at least 1.
fn smoothing_window(n: usize) -> usize {
    let w = (n / 40).max(if n >= 10 { 3 } else { 1 });
    w | 1
}

/// Centred moving average over `window` points (fewer at the ends), skipping non-finite
/// values.
fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    // Prefix sums of the finite values and of their count.
    let mut sum = vec![0.0; points.len() + 1];
    let mut count = vec![0usize; points.len() + 1];
    for (i, p) in points.iter().enumerate() {
        let ok = p.1.is_finite();
        sum[i + 1] = sum[i] + if ok { p.1 } else { 0.0 };
        count[i + 1] = count[i] + usize::from(ok);
    }
    let half = window / 2;
    (0..points.len())
        .filter_map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(points.len()));
            let n = count[hi] - count[lo];
            (n > 0).then(|| (points[i].0, (sum[hi] - sum[lo]) / n as f64))
        })
        .collect()
}
