//! Heartbeats as training examples: windows of one lead centred on the annotated R peaks,
//! labelled with their AAMI class, at a common sampling rate.

use crate::wfdb::{Annotation, Record, aami_class};

/// One beat window.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    /// `window` samples of the lead (mV), centred on the R peak, minus the window's median
    /// (removes baseline wander).
    pub samples: Vec<f32>,
    /// AAMI class: `N`, `S`, `V`, `F` or `Q`.
    pub class: char,
    /// R-peak sample index at the common rate.
    pub at: usize,
}

/// Linear resampling of a signal from `from_hz` to `to_hz`.
pub fn resample(x: &[f32], from_hz: f64, to_hz: f64) -> Vec<f32> {
    if (from_hz - to_hz).abs() < 1e-9 || x.is_empty() {
        return x.to_vec();
    }
    let n = ((x.len() as f64) * to_hz / from_hz).floor() as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 * from_hz / to_hz;
            let j = t.floor() as usize;
            let f = (t - j as f64) as f32;
            let a = x[j.min(x.len() - 1)];
            let b = x[(j + 1).min(x.len() - 1)];
            a + (b - a) * f
        })
        .collect()
}

/// Beat windows of `lead` of a record, resampled to `rate_hz`, `window` samples each, for every
/// annotation that is a beat (AAMI classes; rhythm, noise and artifact marks are skipped) and
/// whose window fits inside the record.
pub fn beats(
    record: &Record,
    annotations: &[Annotation],
    lead: usize,
    rate_hz: f64,
    window: usize,
) -> Vec<Beat> {
    let Some(signal) = record.signals.get(lead) else {
        return vec![];
    };
    let fs = record.header.sampling_hz;
    let x = resample(signal, fs, rate_hz);
    let half = window / 2;
    annotations
        .iter()
        .filter_map(|a| {
            let class = aami_class(&a.symbol)?;
            let at = (a.sample as f64 * rate_hz / fs).round() as usize;
            if at < half || at + (window - half) > x.len() {
                return None;
            }
            let w = &x[at - half..at - half + window];
            let mut sorted = w.to_vec();
            sorted.sort_by(f32::total_cmp);
            let median = sorted[sorted.len() / 2];
            Some(Beat {
                samples: w.iter().map(|v| v - median).collect(),
                class,
                at,
            })
        })
        .collect()
}
