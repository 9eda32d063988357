//! The WFDB reader against a hand-made tiny record and, when `CNN_ECG_DIR` is set, the real
//! MIT-BIH records (their checksums and the published beat counts).

#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use signals::wfdb::{aami_class, decode_212, parse_annotations, read_annotations, read_record};

/// Format 212 by hand: samples (a, b) = (1, -2) and (2047, -2048).
/// a = 1 = 0x001, b = -2 = 0xFFE: bytes 0x01, 0xF0 (b's high nibble over a's), 0xFE.
/// a = 2047 = 0x7FF, b = -2048 = 0x800: bytes 0xFF, 0x87, 0x00.
const DAT: [u8; 6] = [0x01, 0xF0, 0xFE, 0xFF, 0x87, 0x00];

#[test]
fn format_212_by_hand() {
    let v = decode_212(&DAT, 2);
    assert_eq!(v, vec![vec![1, 2047], vec![-2, -2048]]);
}

fn tiny_record(dir: &Path, dat: &[u8], checksums: (i32, i32)) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("t.hea"),
        format!(
            "t 2 360 2\n# a comment\nt.dat 212 200 11 0 1 {} 0 MLII\nt.dat 212 100(4)/mV 11 0 -2 {} 0 V1\n",
            checksums.0, checksums.1
        ),
    )
    .unwrap();
    std::fs::write(dir.join("t.dat"), dat).unwrap();
}

#[test]
fn a_tiny_record_reads_in_millivolts() {
    let dir = std::env::temp_dir().join(format!("wfdb-{}", std::process::id()));
    // Checksums: 1 + 2047 = 2048; -2 - 2048 = -2050.
    tiny_record(&dir, &DAT, (2048, -2050));
    let r = read_record(&dir, "t").unwrap();
    assert_eq!(r.header.sampling_hz, 360.0);
    assert_eq!(r.header.signals[1].description, "V1");
    // Lead 1: gain 200, baseline = ADC zero 0. Lead 2: gain 100, baseline 4.
    assert_eq!(r.signals[0], vec![1.0 / 200.0, 2047.0 / 200.0]);
    assert_eq!(r.signals[1], vec![-6.0 / 100.0, -2052.0 / 100.0]);
    // A truncated data file and a wrong checksum are named errors.
    tiny_record(&dir, &DAT[..3], (2048, -2050));
    let e = read_record(&dir, "t").unwrap_err().to_string();
    assert!(e.contains("t.dat") && e.contains("truncated"), "{e}");
    tiny_record(&dir, &DAT, (2049, -2050));
    let e = read_record(&dir, "t").unwrap_err().to_string();
    assert!(e.contains("checksum") && e.contains("MLII"), "{e}");
    // A header naming a missing data file.
    std::fs::remove_file(dir.join("t.dat")).unwrap();
    let e = read_record(&dir, "t").unwrap_err().to_string();
    assert!(e.contains("t.hea") && e.contains("does not exist"), "{e}");
    // A header with fewer signal lines than announced.
    std::fs::write(
        dir.join("t.hea"),
        "t 3 360 2\nt.dat 212 200 11 0 1 0 0 MLII\n",
    )
    .unwrap();
    let e = read_record(&dir, "t").unwrap_err().to_string();
    assert!(e.contains("3 signals"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Annotations by hand: N at 5, a SKIP of 70000, V 3 later, an AUX of 3 bytes, end.
#[test]
fn annotations_by_hand() {
    let w = |code: u16, value: u16| ((code << 10) | value).to_le_bytes();
    let mut b = vec![];
    b.extend(w(1, 5));
    b.extend(w(59, 0));
    b.extend(((70_000u32 >> 16) as u16).to_le_bytes());
    b.extend(((70_000u32 & 0xFFFF) as u16).to_le_bytes());
    b.extend(w(5, 3));
    b.extend(w(63, 3));
    b.extend(b"(N\0\0");
    b.extend(w(0, 0));
    let a = parse_annotations(&b, Path::new("t.atr")).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].sample, a[0].symbol.as_str()), (5, "N"));
    assert_eq!((a[1].sample, a[1].symbol.as_str()), (70_008, "V"));
    let e = parse_annotations(&b[..4], Path::new("t.atr"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.atr") && e.contains("byte"), "{e}");
    assert_eq!(aami_class("E"), Some('V'));
    assert_eq!(aami_class("+"), None);
}

fn ecg_dir() -> Option<PathBuf> {
    match std::env::var_os("CNN_ECG_DIR") {
        Some(v) => Some(PathBuf::from(v)),
        None => {
            eprintln!("skipped: set CNN_ECG_DIR to run this test on the real records");
            None
        }
    }
}

#[test]
fn mit_bih_records_match_their_checksums_and_beat_counts() {
    let Some(root) = ecg_dir() else {
        return;
    };
    let mitdb = root.join("mitdb");
    let r = read_record(&mitdb, "208").unwrap();
    assert_eq!(r.signals.len(), 2);
    assert_eq!(r.signals[0].len(), 650_000);
    let a = read_annotations(&mitdb, "208", "atr").unwrap();
    let count = |s: &str| a.iter().filter(|x| x.symbol == s).count();
    assert_eq!(
        (count("N"), count("V"), count("F"), count("S"), count("Q")),
        (1586, 992, 373, 2, 2)
    );
    let r = read_record(&root.join("svdb"), "800").unwrap();
    assert_eq!((r.header.sampling_hz, r.signals[1].len()), (128.0, 230_400));
    let a = read_annotations(&mitdb, "100", "atr").unwrap();
    assert_eq!(a.iter().filter(|x| x.symbol == "A").count(), 33);
}

#[test]
fn hostile_sampling_frequencies_and_skips_are_refused() {
    for fs in ["0", "1e-6", "-360", "NaN", "inf", "1e9"] {
        let text = format!("t 1 {fs} 2\nt.dat 212 200 11 0 1 0 0 MLII\n");
        let e = signals::wfdb::parse_header(&text, Path::new("t.hea"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.hea") && e.contains("sampling frequency"),
            "{fs}: {e}"
        );
    }
    // A SKIP of -10 samples before any annotation: before the record's start.
    let w = |code: u16, value: u16| ((code << 10) | value).to_le_bytes();
    let mut b = vec![];
    b.extend(w(59, 0));
    b.extend(((-10i32 as u32 >> 16) as u16).to_le_bytes());
    b.extend(((-10i32 as u32 & 0xFFFF) as u16).to_le_bytes());
    b.extend(w(1, 5));
    let e = parse_annotations(&b, Path::new("n.atr"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("n.atr") && e.contains("SKIP"), "{e}");
    // A backward SKIP that stays after the start is valid.
    let mut ok = w(1, 20).to_vec();
    ok.extend(&b);
    let a = parse_annotations(&ok, Path::new("ok.atr")).unwrap();
    assert_eq!(a.iter().map(|a| a.sample).collect::<Vec<_>>(), vec![20, 15]);
}
