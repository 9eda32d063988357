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
    (0..resampled_len(x.len(), from_hz, to_hz))
        .map(|i| sample_at(x, from_hz, to_hz, i))
        .collect()
}

/// The length of `len` samples resampled from `from_hz` to `to_hz`.
fn resampled_len(len: usize, from_hz: f64, to_hz: f64) -> usize {
    if (from_hz - to_hz).abs() < 1e-9 {
        return len;
    }
    ((len as f64) * to_hz / from_hz).floor() as usize
}

/// Sample `i` of `x` resampled from `from_hz` to `to_hz` (linear interpolation).
fn sample_at(x: &[f32], from_hz: f64, to_hz: f64, i: usize) -> f32 {
    if (from_hz - to_hz).abs() < 1e-9 {
        return x[i];
    }
    let t = i as f64 * from_hz / to_hz;
    let j = t.floor() as usize;
    let f = (t - j as f64) as f32;
    let a = x[j.min(x.len() - 1)];
    let b = x[(j + 1).min(x.len() - 1)];
    a + (b - a) * f
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
    // Only the windows are resampled, never the whole signal: a header's low sampling rate
    // cannot make the resampled record outgrow memory.
    let len = resampled_len(signal.len(), fs, rate_hz);
    let half = window / 2;
    annotations
        .iter()
        .filter_map(|a| {
            let class = aami_class(&a.symbol)?;
            let at = (a.sample as f64 * rate_hz / fs).round() as usize;
            if at < half || at.saturating_add(window - half) > len {
                return None;
            }
            let w: Vec<f32> = (at - half..at - half + window)
                .map(|i| sample_at(signal, fs, rate_hz, i))
                .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wfdb::Header;

    /// The windows interpolated one by one equal slices of the whole resampled signal (what
    /// `beats` computed before it stopped resampling whole records).
    #[test]
    fn beat_windows_equal_slices_of_the_resampled_signal() {
        let signal: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        let record = Record {
            header: Header {
                name: "t".into(),
                sampling_hz: 250.0,
                samples: signal.len(),
                signals: vec![],
            },
            signals: vec![signal.clone()],
        };
        let ann: Vec<Annotation> = [3u64, 100, 500, 990]
            .iter()
            .map(|&s| Annotation {
                sample: s,
                symbol: "N".into(),
            })
            .collect();
        let whole = resample(&signal, 250.0, 360.0);
        let got = beats(&record, &ann, 0, 360.0, 64);
        assert_eq!(got.len(), 2, "the first and last beats do not fit");
        for b in got {
            let mut w = whole[b.at - 32..b.at + 32].to_vec();
            let mut sorted = w.clone();
            sorted.sort_by(f32::total_cmp);
            let median = sorted[32];
            w.iter_mut().for_each(|v| *v -= median);
            assert_eq!(b.samples, w);
        }
    }
}
