//! Request counts and latencies per route, served as Prometheus text at `/v1/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// How many recent latencies each route keeps for its quantiles.
const WINDOW: usize = 2048;

#[derive(Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    recent: VecDeque<f64>,
    seconds_total: f64,
}

/// A gauge: name, help text, and values by label set (`{gallery="team"}`, or empty).
pub struct Gauge<'a> {
    /// Metric name.
    pub name: &'a str,
    /// What it measures.
    pub help: &'a str,
    /// `(labels, value)` pairs.
    pub values: Vec<(String, f64)>,
}

/// Counters of a running server.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Route>>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at]
}

impl Metrics {
    /// Records one answered request.
    pub fn record(&self, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().expect("not poisoned");
        let r = routes.entry(route.to_string()).or_default();
        *r.by_status.entry(status).or_default() += 1;
        r.seconds_total += seconds;
        if r.recent.len() == WINDOW {
            r.recent.pop_front();
        }
        r.recent.push_back(seconds);
    }

    /// The Prometheus text exposition, with the gauges given.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let routes = self.routes.lock().expect("not poisoned");
        let mut out = String::new();
        out.push_str("# HELP cnn_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE cnn_requests_total counter\n");
        for (route, r) in routes.iter() {
            for (status, n) in &r.by_status {
                out.push_str(&format!(
                    "cnn_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
                ));
            }
        }
        out.push_str("# HELP cnn_request_seconds Latency by route (quantiles over the last 2048 requests).\n");
        out.push_str("# TYPE cnn_request_seconds summary\n");
        for (route, r) in routes.iter() {
            let mut sorted: Vec<f64> = r.recent.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            for q in [0.5, 0.9, 0.99] {
                out.push_str(&format!(
                    "cnn_request_seconds{{route=\"{route}\",quantile=\"{q}\"}} {:.6}\n",
                    quantile(&sorted, q)
                ));
            }
            let count: u64 = r.by_status.values().sum();
            out.push_str(&format!(
                "cnn_request_seconds_sum{{route=\"{route}\"}} {:.6}\ncnn_request_seconds_count{{route=\"{route}\"}} {count}\n",
                r.seconds_total
            ));
        }
        for g in gauges {
            let name = g.name;
            out.push_str(&format!("# HELP {name} {}\n# TYPE {name} gauge\n", g.help));
            for (labels, v) in &g.values {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_quantiles_per_route() {
        let m = Metrics::default();
        for i in 0..100 {
            m.record("/v1/detect", 200, f64::from(i) / 1000.0);
        }
        m.record("/v1/detect", 413, 0.5);
        let text = m.render(&[Gauge {
            name: "cnn_queue_depth",
            help: "Jobs waiting.",
            values: vec![(String::new(), 3.0)],
        }]);
        assert!(text.contains("cnn_requests_total{route=\"/v1/detect\",status=\"200\"} 100"));
        assert!(text.contains("cnn_requests_total{route=\"/v1/detect\",status=\"413\"} 1"));
        assert!(
            text.contains("cnn_request_seconds{route=\"/v1/detect\",quantile=\"0.5\"} 0.050000")
        );
        assert!(text.contains("cnn_request_seconds_count{route=\"/v1/detect\"} 101"));
        assert!(text.contains("cnn_queue_depth 3"));
    }
}
