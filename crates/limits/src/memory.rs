//! What this process uses and may still take, read from Linux's `/proc` (`None` elsewhere):
//! the style command's memory estimate, the search benchmark's peak, the advice before a run
//! that would not fit.

/// A `KEY:  N kB` field of a `/proc` file, in MiB.
fn field_mb(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn status_field_mb(key: &str) -> Option<f64> {
    field_mb(&std::fs::read_to_string("/proc/self/status").ok()?, key)
}

/// Peak resident memory of this process (`VmHWM`), MiB.
pub fn peak_rss_mb() -> Option<f64> {
    status_field_mb("VmHWM:")
}

/// Resident memory of this process now (`VmRSS`), MiB.
pub fn current_rss_mb() -> Option<f64> {
    status_field_mb("VmRSS:")
}

/// How much more memory this process may take, MiB: the machine's available memory
/// (`MemAvailable`), or less when an address-space limit (`ulimit -v`, `prlimit --as`) leaves
/// less room above what the process already maps.
pub fn available_mb() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut free_mb = field_mb(&meminfo, "MemAvailable:")?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(line) = limits.lines().find(|l| l.starts_with("Max address space")) {
        // "Max address space  <soft> <hard> bytes": a number, or "unlimited".
        if let Some(soft) = line
            .split_whitespace()
            .nth(3)
            .and_then(|v| v.parse::<f64>().ok())
        {
            let mapped_mb = status_field_mb("VmSize:").unwrap_or(0.0);
            free_mb = free_mb.min(soft / (1024.0 * 1024.0) - mapped_mb);
        }
    }
    Some(free_mb.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_read_in_mib() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n";
        assert_eq!(field_mb(text, "VmHWM:"), Some(2.0));
        assert_eq!(field_mb(text, "VmRSS:"), Some(1.0));
        assert_eq!(field_mb(text, "VmSize:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_its_memory() {
        let (now, peak) = (current_rss_mb().unwrap(), peak_rss_mb().unwrap());
        assert!(now > 0.0 && peak >= now, "rss {now} MiB, peak {peak} MiB");
        // A 64 MiB buffer written in full raises the peak by about that much.
        let v = vec![1u8; 64 << 20];
        assert!(
            peak_rss_mb().unwrap() >= peak.max(now + 60.0) - 1.0,
            "{}",
            v[v.len() - 1]
        );
        assert!(available_mb().unwrap() > 0.0);
    }
}
