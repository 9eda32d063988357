//! The `.npy` / `.npz` reader against hand-made files.

use std::io::Write;
use std::path::Path;

use nn::npy::{Dtype, parse_npy, read_npz, take_array};

fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn little_and_big_endian_and_bool() {
    let le: Vec<u8> = [1.5f32, -2.0, 3.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = parse_npy(&npy("<f4", "(3,)", &le), Path::new("a.npy")).unwrap();
    assert_eq!((a.shape.clone(), a.dtype), (vec![3], Dtype::F32));
    assert_eq!(a.to_f32(), vec![1.5, -2.0, 3.25]);
    let be: Vec<u8> = [7i64, -9].iter().flat_map(|v| v.to_be_bytes()).collect();
    let b = parse_npy(&npy(">i8", "(2, 1)", &be), Path::new("b.npy")).unwrap();
    assert_eq!(b.shape, vec![2, 1]);
    assert_eq!(b.to_i64(), vec![7, -9]);
    let c = parse_npy(&npy("|b1", "(2, 2)", &[1, 0, 0, 1]), Path::new("c.npy")).unwrap();
    assert_eq!(c.to_f32(), vec![1.0, 0.0, 0.0, 1.0]);
    let s = parse_npy(&npy("<f8", "()", &2.5f64.to_le_bytes()), Path::new("s.npy")).unwrap();
    assert_eq!((s.numel(), s.to_f32()), (1, vec![2.5]));
}

#[test]
fn bad_arrays_are_named_errors() {
    let e = |bytes: &[u8]| {
        parse_npy(bytes, Path::new("x.npy"))
            .unwrap_err()
            .to_string()
    };
    let msg = e(&npy("<f4", "(3,)", &[0; 8]));
    assert!(
        msg.contains("x.npy") && msg.contains("12 data bytes") && msg.contains("has 8"),
        "{msg}"
    );
    assert!(e(b"PK\x03\x04 not npy").contains("magic"));
    assert!(e(&npy("<c16", "(1,)", &[0; 16])).contains("unsupported dtype"));
    let mut fortran = npy("<f4", "(1,)", &[0; 4]);
    let at = fortran.windows(5).position(|w| w == b"False").unwrap();
    fortran[at..at + 5].copy_from_slice(b"True ");
    assert!(e(&fortran).contains("Fortran"));
}

#[test]
fn npz_archive_round_trip_and_missing_key() {
    let dir = std::env::temp_dir().join(format!("npz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.npz");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("images.npy", opts).unwrap();
        z.write_all(&npy("|u1", "(2, 3)", &[1, 2, 3, 4, 5, 6]))
            .unwrap();
        z.start_file("labels.npy", opts).unwrap();
        z.write_all(&npy(
            "<i8",
            "(2,)",
            &[5i64, 6]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        ))
        .unwrap();
        z.finish().unwrap();
    }
    let mut arrays = read_npz(&path).unwrap();
    let labels = take_array(&mut arrays, "labels", &path).unwrap();
    assert_eq!(labels.to_i64(), vec![5, 6]);
    let images = take_array(&mut arrays, "images", &path).unwrap();
    assert_eq!(
        (images.shape.clone(), images.to_f32()[5]),
        (vec![2, 3], 6.0)
    );
    let e = take_array(&mut arrays, "volumes", &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.npz") && e.contains("volumes"), "{e}");
    std::fs::write(dir.join("trunc.npz"), &std::fs::read(&path).unwrap()[..40]).unwrap();
    assert!(read_npz(&dir.join("trunc.npz")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn written_arrays_read_back() {
    let dir = std::env::temp_dir().join(format!("npy-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = tensor::Tensor::from_vec(vec![1.0, -2.5, 3.0, 4.0, 5.0, 6.0], &[1, 2, 3]).unwrap();
    let path = dir.join("t.npy");
    nn::npy::write_npy(&path, &t).unwrap();
    let a = parse_npy(&std::fs::read(&path).unwrap(), &path).unwrap();
    assert_eq!((a.shape.clone(), a.to_f32()), (vec![1, 2, 3], t.to_vec()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_headers_are_refused_not_panics() {
    let e = |bytes: &[u8]| {
        parse_npy(bytes, Path::new("h.npy"))
            .unwrap_err()
            .to_string()
    };
    assert!(e(&npy("", "(1,)", &[0; 4])).contains("unsupported dtype"));
    assert!(e(&npy("é4", "(1,)", &[0; 4])).contains("unsupported dtype"));
    let msg = e(&npy("<f4", "(4294967296, 4294967296, 4294967296)", &[0; 4]));
    assert!(msg.contains("h.npy") && msg.contains("overflows"), "{msg}");
    // A product that wraps to a small number in release builds must not pass either.
    let msg = e(&npy("|u1", "(18446744073709551615, 2)", &[0; 2]));
    assert!(msg.contains("overflows"), "{msg}");
}

/// A zip whose one stored member's declared (uncompressed) size in the central directory is
/// patched to `declared`.
fn zip_declaring(path: &Path, member: &[u8], declared: u32) {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("a.npy", opts).unwrap();
    z.write_all(member).unwrap();
    let mut bytes = z.finish().unwrap().into_inner();
    let cd = bytes
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("central directory");
    bytes[cd + 24..cd + 28].copy_from_slice(&declared.to_le_bytes());
    let local = 0;
    bytes[local + 22..local + 26].copy_from_slice(&declared.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npz_members_declaring_huge_or_wrong_sizes_are_refused_before_allocating() {
    let dir = std::env::temp_dir().join(format!("npz-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let member = npy("|u1", "(4,)", &[1, 2, 3, 4]);
    let huge = dir.join("huge.npz");
    zip_declaring(&huge, &member, 0xF000_0000);
    let msg = read_npz(&huge).unwrap_err().to_string();
    assert!(
        msg.contains("huge.npz") && msg.contains("limit") && msg.contains("CNN_MAX_INPUT_MB"),
        "{msg}"
    );
    let short = dir.join("short.npz");
    zip_declaring(&short, &member, member.len() as u32 - 10);
    let msg = read_npz(&short).unwrap_err().to_string();
    assert!(msg.contains("short.npz"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}
