//! PhysioNet WFDB records (the MIT-BIH databases): a header `NAME.hea`, the signals in format
//! 212 (two 12-bit samples in three bytes, channels interleaved) and beat annotations in the MIT
//! format (`.atr`: 16-bit words of a 6-bit code and a 10-bit time step, with escapes).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

fn malformed(path: &Path, reason: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    limits::read_file(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One signal (lead) of a header.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    /// The data file it is stored in.
    pub file: String,
    /// Storage format (only 212 is read).
    pub format: u32,
    /// ADC units per physical unit (mV).
    pub gain: f64,
    /// ADC value of 0 physical units.
    pub baseline: i32,
    /// Checksum: the sum of all samples, modulo 2^16, as a signed 16-bit number.
    pub checksum: i32,
    /// Lead name (`MLII`, `V1`, ...).
    pub description: String,
}

/// A parsed `.hea` header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Record name.
    pub name: String,
    /// Samples per second.
    pub sampling_hz: f64,
    /// Samples per signal.
    pub samples: usize,
    /// The signals.
    pub signals: Vec<SignalSpec>,
}

/// The lowest sampling frequency a header may give (Hz): below it, time-based windows would
/// span absurd sample counts (and 0 divides).
pub const MIN_SAMPLING_HZ: f64 = 1.0;
/// The highest sampling frequency a header may give (Hz).
pub const MAX_SAMPLING_HZ: f64 = 1e6;

/// Parses a header's text (`path` is used in errors).
///
/// # Errors
/// [`Error::Malformed`] naming the line: a missing or non-numeric field, a sampling frequency
/// outside [`MIN_SAMPLING_HZ`]..=[`MAX_SAMPLING_HZ`], fewer signal lines than the record line
/// announces.
pub fn parse_header(text: &str, path: &Path) -> Result<Header> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (ln, record) = lines
        .next()
        .ok_or_else(|| malformed(path, "empty header"))?;
    let f: Vec<&str> = record.split_whitespace().collect();
    let field = |i: usize, what: &str| -> Result<&str> {
        f.get(i)
            .copied()
            .ok_or_else(|| malformed(path, format!("line {ln}: record line without {what}")))
    };
    let name = field(0, "a name")?
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let nsig: usize = field(1, "a signal count")?
        .parse()
        .map_err(|_| malformed(path, format!("line {ln}: bad signal count")))?;
    let sampling_hz: f64 = match f.get(2) {
        Some(s) => s
            .split('/')
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| malformed(path, format!("line {ln}: bad sampling frequency {s:?}")))?,
        None => 250.0,
    };
    if !(MIN_SAMPLING_HZ..=MAX_SAMPLING_HZ).contains(&sampling_hz) {
        return Err(malformed(
            path,
            format!(
                "line {ln}: sampling frequency {sampling_hz} Hz is outside {MIN_SAMPLING_HZ}..={MAX_SAMPLING_HZ} Hz"
            ),
        ));
    }
    let samples: usize = match f.get(3) {
        Some(s) => s
            .parse()
            .map_err(|_| malformed(path, format!("line {ln}: bad sample count {s:?}")))?,
        None => 0,
    };
    let mut signals = vec![];
    for _ in 0..nsig {
        let (ln, l) = lines.next().ok_or_else(|| {
            malformed(
                path,
                format!(
                    "the record line announces {nsig} signals, the header has {}",
                    signals.len()
                ),
            )
        })?;
        let g: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize, what: &str| -> Result<&str> {
            g.get(i)
                .copied()
                .ok_or_else(|| malformed(path, format!("line {ln}: signal line without {what}")))
        };
        let format: u32 = num(1, "a format")?
            .split(['x', ':', '+'])
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| malformed(path, format!("line {ln}: bad format")))?;
        // "200", "200(0)" or "200(0)/mV": gain, optional baseline, optional units.
        let gain_field = g.get(2).copied().unwrap_or("200");
        let gain_text = gain_field.split(['(', '/']).next().unwrap_or("");
        let gain: f64 = gain_text
            .parse()
            .map_err(|_| malformed(path, format!("line {ln}: bad gain {gain_field:?}")))?;
        let adc_zero: i32 = g.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
        let baseline =
            match gain_field.split_once('(') {
                Some((_, rest)) => rest.split(')').next().unwrap_or("").parse().map_err(|_| {
                    malformed(path, format!("line {ln}: bad baseline {gain_field:?}"))
                })?,
                None => adc_zero,
            };
        let checksum: i32 = g.get(6).and_then(|s| s.parse().ok()).unwrap_or(0);
        signals.push(SignalSpec {
            file: num(0, "a file name")?.to_string(),
            format,
            gain: if gain == 0.0 || !gain.is_finite() {
                200.0
            } else {
                gain
            },
            baseline,
            checksum,
            description: g.get(8..).map(|d| d.join(" ")).unwrap_or_default(),
        });
    }
    Ok(Header {
        name,
        sampling_hz,
        samples,
        signals,
    })
}

/// A record: its header and every signal in physical units (mV).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The header.
    pub header: Header,
    /// `signals[c][t]`, millivolts.
    pub signals: Vec<Vec<f32>>,
}

/// Decodes format-212 bytes of `channels` interleaved signals into ADC values per channel.
pub fn decode_212(bytes: &[u8], channels: usize) -> Vec<Vec<i32>> {
    let mut values = Vec::with_capacity(bytes.len() / 3 * 2);
    for c in bytes.chunks_exact(3) {
        let a = (c[0] as i32) | (((c[1] & 0x0F) as i32) << 8);
        let b = (c[2] as i32) | (((c[1] & 0xF0) as i32) << 4);
        let sign = |v: i32| if v >= 2048 { v - 4096 } else { v };
        values.push(sign(a));
        values.push(sign(b));
    }
    let mut out = vec![vec![]; channels.max(1)];
    for (i, v) in values.into_iter().enumerate() {
        out[i % channels.max(1)].push(v);
    }
    out
}

/// Reads the record `dir/NAME` (`NAME.hea` and its format-212 data file), checking each
/// signal's length and checksum.
///
/// # Errors
/// A missing or unreadable file (named); a malformed header; a format other than 212; a data
/// file that names a missing file, is shorter than the header says (truncated) or whose
/// checksum differs (corrupt).
pub fn read_record(dir: &Path, name: &str) -> Result<Record> {
    let hea = dir.join(format!("{name}.hea"));
    let text = String::from_utf8_lossy(&read(&hea)?).into_owned();
    let header = parse_header(&text, &hea)?;
    let files: Vec<&str> = header.signals.iter().map(|s| s.file.as_str()).collect();
    if files.iter().any(|f| *f != files[0]) || header.signals.is_empty() {
        return Err(malformed(
            &hea,
            "only records with every signal in one data file are read",
        ));
    }
    if let Some(s) = header.signals.iter().find(|s| s.format != 212) {
        return Err(malformed(
            &hea,
            format!(
                "signal {} is in format {}; only format 212 is read",
                s.description, s.format
            ),
        ));
    }
    let dat: PathBuf = dir.join(files[0]);
    if !dat.is_file() {
        return Err(malformed(
            &hea,
            format!("names data file {} which does not exist", dat.display()),
        ));
    }
    let bytes = read(&dat)?;
    record_from(header, &bytes, &dat)
}

/// A record from its parsed header and the bytes of its (format 212) data file, checked
/// against the header's sample count and checksums (`dat` is used in errors).
///
/// # Errors
/// As [`read_record`].
pub fn record_from(header: Header, bytes: &[u8], dat: &Path) -> Result<Record> {
    if header.signals.is_empty() {
        return Err(malformed(dat, "the header has no signals"));
    }
    let n = header.signals.len();
    let adc = decode_212(bytes, n);
    let have = adc.iter().map(Vec::len).min().unwrap_or(0);
    if header.samples > 0 && have < header.samples {
        return Err(malformed(
            dat,
            format!(
                "truncated: the header announces {} samples per signal, the file holds {have}",
                header.samples
            ),
        ));
    }
    let len = if header.samples > 0 {
        header.samples
    } else {
        have
    };
    let mut signals = vec![];
    for (spec, values) in header.signals.iter().zip(&adc) {
        let sum = values[..len].iter().fold(0i32, |s, &v| s.wrapping_add(v));
        let checksum = sum as i16 as i32;
        if checksum != spec.checksum {
            return Err(malformed(
                dat,
                format!(
                    "checksum of signal {} is {checksum}, the header says {} (corrupt data)",
                    spec.description, spec.checksum
                ),
            ));
        }
        signals.push(
            values[..len]
                .iter()
                .map(|&v| ((f64::from(v) - f64::from(spec.baseline)) / spec.gain) as f32)
                .collect(),
        );
    }
    Ok(Record { header, signals })
}

/// One annotation: sample index and MIT code's symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Sample index.
    pub sample: u64,
    /// The label (`N`, `V`, `A`, `+`, ...).
    pub symbol: String,
}

/// MIT annotation codes 0..=41 and their symbols.
const SYMBOLS: [&str; 42] = [
    " ", "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "", "|", "", "s",
    "T", "*", "D", "\"", "=", "p", "B", "^", "t", "+", "u", "?", "!", "[", "]", "e", "n", "@", "x",
    "f", "(", ")", "r",
];

/// Parses MIT-format annotation bytes (`path` is used in errors).
///
/// # Errors
/// [`Error::Malformed`] with the byte offset: an odd length, an escape cut short.
pub fn parse_annotations(bytes: &[u8], path: &Path) -> Result<Vec<Annotation>> {
    let word = |i: usize| -> Result<u16> {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| malformed(path, format!("byte {i}: annotation file ends mid-record")))
    };
    let mut out = vec![];
    let (mut i, mut time) = (0usize, 0u64);
    while i + 1 < bytes.len() {
        let w = word(i)?;
        i += 2;
        let (code, value) = ((w >> 10) as usize, (w & 0x3FF) as u64);
        match code {
            0 if value == 0 => break,
            59 => {
                // SKIP: a 32-bit interval, high 16 bits first.
                let hi = word(i)? as u32;
                let lo = word(i + 2)? as u32;
                let skip = ((hi << 16) | lo) as i32 as i64;
                time = time.checked_add_signed(skip).ok_or_else(|| {
                    malformed(
                        path,
                        format!(
                            "byte {}: SKIP of {skip} samples moves before the record's start",
                            i - 2
                        ),
                    )
                })?;
                i += 4;
            }
            60..=62 => {} // NUM, SUB, CHN: attributes of the last annotation.
            63 => {
                // AUX: `value` bytes of text, padded to an even count.
                i += (value as usize).div_ceil(2) * 2;
                if i > bytes.len() {
                    return Err(malformed(
                        path,
                        format!("byte {i}: aux text runs past the end"),
                    ));
                }
            }
            c => {
                time = time.saturating_add(value);
                out.push(Annotation {
                    sample: time,
                    symbol: SYMBOLS.get(c).copied().unwrap_or("?").to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Reads `dir/NAME.EXT` annotations (`atr` for the reference beat labels).
///
/// # Errors
/// As [`parse_annotations`]; a missing file.
pub fn read_annotations(dir: &Path, name: &str, ext: &str) -> Result<Vec<Annotation>> {
    let path = dir.join(format!("{name}.{ext}"));
    parse_annotations(&read(&path)?, &path)
}

/// The AAMI class of a beat label: `N` = {N, L, R, e, j}, `S` = {A, a, J, S}, `V` = {V, E},
/// `F` = {F}, `Q` = {/, f, Q}; `None` for annotations that are not beats (`+`, `~`, `|`, ...).
pub fn aami_class(symbol: &str) -> Option<char> {
    match symbol {
        "N" | "L" | "R" | "e" | "j" => Some('N'),
        "A" | "a" | "J" | "S" => Some('S'),
        "V" | "E" => Some('V'),
        "F" => Some('F'),
        "/" | "f" | "Q" => Some('Q'),
        _ => None,
    }
}
