//! Scoring detections against ground truth: greedy matching by score at an IoU threshold
//! (rotated IoU; axis-aligned truth boxes are matched with the detections' axis-aligned
//! bounds), precision/recall/F1 at a given threshold and at the best one, average precision
//! (all-point interpolation) at IoU 0.5 and averaged over 0.50:0.05:0.95, heading error of the
//! matched pairs (mod 180° or 360°), and the count error.

use crate::geometry::{axis_iou, rotated_iou, OrientedBox};
use kestrel_samples::HeadingMode;
use serde::Serialize;
use std::collections::HashMap;

/// A ground-truth object.
#[derive(Clone, Debug)]
pub struct TruthBox {
    pub image: String,
    pub bbox: OrientedBox,
    /// Axis-aligned truth (e.g. YOLO, VOC): matched by axis-aligned IoU, no heading.
    pub axis_aligned: bool,
    /// What the truth says of the heading (`None`: nothing).
    pub heading: Option<HeadingMode>,
}

/// A detection to score.
#[derive(Clone, Debug)]
pub struct PredictedBox {
    pub image: String,
    pub bbox: OrientedBox,
    pub score: f32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AtThreshold {
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub detections: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalReport {
    pub iou: f64,
    pub truth: usize,
    pub images: usize,
    pub at_default: AtThreshold,
    pub at_best: AtThreshold,
    pub ap50: f64,
    pub ap50_95: f64,
    /// Median and 90th percentile of |heading error| over matched pairs whose truth has a
    /// heading, degrees; `None` when no truth has one.
    pub heading_error_median_deg: Option<f64>,
    pub heading_error_p90_deg: Option<f64>,
    /// (detections at the default threshold − truth) / truth.
    pub count_error: f64,
}

fn overlap(t: &TruthBox, p: &PredictedBox) -> f64 {
    if t.axis_aligned {
        axis_iou(t.bbox.bounds(), p.bbox.bounds())
    } else {
        rotated_iou(&t.bbox, &p.bbox)
    }
}

/// Greedy matching, strongest detection first, each to the unmatched truth it overlaps most
/// (at least `iou`). Returns, per detection in score order, (score, matched truth index).
fn match_all(truth: &[TruthBox], preds: &[PredictedBox], rule: Matching) -> Vec<(f32, Option<usize>)> {
    let mut by_image: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        by_image.entry(t.image.as_str()).or_default().push(i);
    }
    let mut order: Vec<usize> = (0..preds.len()).collect();
    order.sort_by(|&a, &b| preds[b].score.total_cmp(&preds[a].score));
    let mut taken = vec![false; truth.len()];
    order
        .into_iter()
        .map(|i| {
            let p = &preds[i];
            let best = by_image.get(p.image.as_str()).and_then(|ids| {
                ids.iter().filter(|&&t| !taken[t]).filter_map(|&t| Some((t, rule.goodness(&truth[t], p)?))).max_by(|a, b| a.1.total_cmp(&b.1))
            });
            if let Some((t, _)) = best {
                taken[t] = true;
            }
            (p.score, best.map(|b| b.0))
        })
        .collect()
}

/// All-point interpolated average precision of a ranked match list.
fn average_precision(ranked: &[(f32, Option<usize>)], truth: usize) -> f64 {
    if truth == 0 {
        return 0.0;
    }
    let mut tp = 0usize;
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(ranked.len()); // (recall, precision)
    for (k, (_, m)) in ranked.iter().enumerate() {
        if m.is_some() {
            tp += 1;
        }
        points.push((tp as f64 / truth as f64, tp as f64 / (k + 1) as f64));
    }
    // Precision envelope (the best precision at this recall or beyond), then the area under
    // the step curve it draws.
    let mut envelope = vec![0.0f64; points.len()];
    let mut best = 0.0f64;
    for i in (0..points.len()).rev() {
        best = best.max(points[i].1);
        envelope[i] = best;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (i, &(r, _)) in points.iter().enumerate() {
        if r > prev_recall {
            ap += (r - prev_recall) * envelope[i];
            prev_recall = r;
        }
    }
    ap
}

fn at(ranked: &[(f32, Option<usize>)], truth: usize, threshold: f32) -> AtThreshold {
    let kept: Vec<&(f32, Option<usize>)> = ranked.iter().filter(|(s, _)| *s >= threshold).collect();
    let tp = kept.iter().filter(|(_, m)| m.is_some()).count();
    let precision = if kept.is_empty() { 0.0 } else { tp as f64 / kept.len() as f64 };
    let recall = if truth == 0 { 0.0 } else { tp as f64 / truth as f64 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    AtThreshold { threshold, precision, recall, f1, detections: kept.len() }
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
}

/// When a detection may be matched to a truth object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Matching {
    /// Overlap at least this IoU (rotated, or axis-aligned for axis-aligned truth).
    Iou(f64),
    /// Centres at most this many pixels apart (object positions, e.g. tree tops).
    Within(f64),
}

impl Matching {
    /// How well `p` matches `t` (higher is better), or `None` when it does not.
    fn goodness(self, t: &TruthBox, p: &PredictedBox) -> Option<f64> {
        match self {
            Matching::Iou(iou) => Some(overlap(t, p)).filter(|&o| o >= iou),
            Matching::Within(r) => {
                let d = (t.bbox.cx - p.bbox.cx).hypot(t.bbox.cy - p.bbox.cy);
                (d <= r).then_some(-d)
            }
        }
    }
}

/// Scores `preds` against `truth` at IoU `iou`; `default_threshold` is the model's.
pub fn evaluate(truth: &[TruthBox], preds: &[PredictedBox], iou: f64, default_threshold: f32) -> EvalReport {
    evaluate_by(truth, preds, Matching::Iou(iou), default_threshold)
}

/// Scores `preds` against `truth` matched by `rule`. With [`Matching::Within`], AP50 and
/// AP50:95 are both the average precision at that radius.
pub fn evaluate_by(truth: &[TruthBox], preds: &[PredictedBox], rule: Matching, default_threshold: f32) -> EvalReport {
    let iou = match rule {
        Matching::Iou(iou) => iou,
        Matching::Within(_) => 0.0,
    };
    let ranked = match_all(truth, preds, rule);
    // Starting from every detection kept: the lowest score is that threshold.
    let lowest = ranked.last().map_or(0.0, |r| r.0);
    let mut at_best = at(&ranked, truth.len(), lowest);
    for &(s, _) in &ranked {
        let a = at(&ranked, truth.len(), s);
        if a.f1 > at_best.f1 {
            at_best = a;
        }
    }
    let ap50 = average_precision(&ranked, truth.len());
    let ap50_95 = match rule {
        Matching::Iou(_) => (0..10).map(|k| average_precision(&match_all(truth, preds, Matching::Iou(0.5 + 0.05 * k as f64)), truth.len())).sum::<f64>() / 10.0,
        Matching::Within(_) => ap50,
    };
    // Heading errors of matched pairs at the default threshold.
    let mut order: Vec<usize> = (0..preds.len()).collect();
    order.sort_by(|&a, &b| preds[b].score.total_cmp(&preds[a].score));
    let mut errors: Vec<f64> = order
        .iter()
        .zip(&ranked)
        .filter(|(_, (s, _))| *s >= default_threshold)
        .filter_map(|(&p, (_, m))| {
            let t = &truth[(*m)?];
            let mode = t.heading?;
            Some(mode.difference_deg(preds[p].bbox.heading_deg, t.bbox.heading_deg))
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let at_default = at(&ranked, truth.len(), default_threshold);
    let images = truth.iter().map(|t| t.image.as_str()).chain(preds.iter().map(|p| p.image.as_str())).collect::<std::collections::HashSet<_>>().len();
    EvalReport {
        iou,
        truth: truth.len(),
        images,
        count_error: if truth.is_empty() { 0.0 } else { (at_default.detections as f64 - truth.len() as f64) / truth.len() as f64 },
        at_default,
        at_best,
        ap50,
        ap50_95,
        heading_error_median_deg: percentile(&errors, 0.5),
        heading_error_p90_deg: percentile(&errors, 0.9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(x: f64) -> TruthBox {
        TruthBox { image: "a".into(), bbox: OrientedBox { cx: x, cy: 0.0, length: 10.0, width: 4.0, heading_deg: 30.0 }, axis_aligned: false, heading: Some(HeadingMode::Axis) }
    }

    fn pred(x: f64, heading: f64, score: f32) -> PredictedBox {
        PredictedBox { image: "a".into(), bbox: OrientedBox { cx: x, cy: 0.0, length: 10.0, width: 4.0, heading_deg: heading }, score }
    }

    #[test]
    fn positions_match_within_the_radius_nearest_first() {
        let two = vec![truth(0.0), truth(100.0)];
        // One 3 px off, one 6 px off the second truth, one far from both.
        let preds = vec![pred(3.0, 0.0, 0.9), pred(106.0, 0.0, 0.8), pred(50.0, 0.0, 0.7)];
        let r = evaluate_by(&two, &preds, Matching::Within(5.0), 0.5);
        assert_eq!((r.at_default.precision, r.at_default.recall), (1.0 / 3.0, 0.5));
        let r = evaluate_by(&two, &preds, Matching::Within(8.0), 0.5);
        assert_eq!((r.at_default.precision, r.at_default.recall), (2.0 / 3.0, 1.0));
        assert!((r.at_best.f1 - 1.0).abs() < 1e-9, "at 0.8 both are found and nothing else");
        // Greedy by score: the strong detection takes the truth even when a weaker one is nearer.
        let preds = vec![pred(4.0, 0.0, 0.9), pred(1.0, 0.0, 0.8)];
        let r = evaluate_by(&[truth(0.0)], &preds, Matching::Within(5.0), 0.5);
        assert_eq!((r.at_default.precision, r.at_default.recall), (0.5, 1.0));
    }

    #[test]
    fn perfect_detections_score_one_and_misses_count() {
        let t = vec![truth(0.0), truth(50.0), truth(100.0), truth(150.0)];
        let p = vec![pred(0.0, 30.0, 0.9), pred(50.5, 212.0, 0.8), pred(100.0, 30.0, 0.7), pred(300.0, 0.0, 0.95)];
        let r = evaluate(&t, &p, 0.5, 0.5);
        assert_eq!(r.at_default.detections, 4);
        assert!((r.at_default.precision - 0.75).abs() < 1e-12 && (r.at_default.recall - 0.75).abs() < 1e-12);
        // Ranked: FP, TP, TP, TP → precision envelope 0.75 over recall 0..0.75.
        assert!((r.ap50 - 0.75 * 0.75).abs() < 1e-9, "{}", r.ap50);
        // Axis heading: 212° is 32° mod 180 → 2° error.
        assert!((r.heading_error_p90_deg.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(r.heading_error_median_deg, Some(0.0));
        assert!((r.count_error - 0.0).abs() < 1e-12);
        assert!(r.at_best.threshold.is_finite());
        let perfect = evaluate(&t, &t.iter().map(|t| pred(t.bbox.cx, 30.0, 0.9)).collect::<Vec<_>>(), 0.5, 0.5);
        assert!((perfect.ap50 - 1.0).abs() < 1e-12 && (perfect.ap50_95 - 1.0).abs() < 1e-12 && perfect.at_best.f1 == 1.0);
        // Detections on another image match nothing.
        let elsewhere = evaluate(&t, &[PredictedBox { image: "b".into(), ..pred(0.0, 30.0, 0.9) }], 0.5, 0.5);
        assert_eq!(elsewhere.at_default.precision, 0.0);
    }

    #[test]
    fn axis_aligned_truth_is_matched_by_bounds() {
        let t = TruthBox { image: "a".into(), bbox: OrientedBox { cx: 0.0, cy: 0.0, length: 10.0, width: 4.0, heading_deg: 0.0 }, axis_aligned: true, heading: None };
        // The same object found at 180°: identical bounds.
        let r = evaluate(&[t], &[pred(0.0, 180.0, 0.9)], 0.5, 0.5);
        assert_eq!(r.at_default.f1, 1.0);
        assert_eq!(r.heading_error_median_deg, None);
    }
}
