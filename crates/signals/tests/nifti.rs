//! The NIfTI-1 reader against hand-made files in both byte orders and, when `CNN_VOLUMES_DIR`
//! is set, nibabel's test volumes.

#![allow(clippy::print_stderr)]

use std::path::Path;

use signals::nifti::{parse_nifti, read_nifti};

/// A 2 x 3 x 1 volume of int16 values 0..6 with slope 2 and intercept 1, in either byte order.
fn tiny(le: bool, datatype: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    let put_i32 = |h: &mut Vec<u8>, o: usize, v: i32| {
        h[o..o + 4].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() })
    };
    let put_i16 = |h: &mut Vec<u8>, o: usize, v: i16| {
        h[o..o + 2].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() })
    };
    let put_f32 = |h: &mut Vec<u8>, o: usize, v: f32| {
        h[o..o + 4].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() })
    };
    put_i32(&mut h, 0, 348);
    for (i, d) in [3i16, 2, 3, 1].iter().enumerate() {
        put_i16(&mut h, 40 + 2 * i, *d);
    }
    put_i16(&mut h, 70, datatype);
    put_i16(&mut h, 72, 16);
    put_f32(&mut h, 80, 1.5); // pixdim[1]
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 2.0);
    put_f32(&mut h, 116, 1.0);
    h[344..348].copy_from_slice(b"n+1\0");
    for v in 0..6i16 {
        h.extend(if le { v.to_le_bytes() } else { v.to_be_bytes() });
    }
    h
}

#[test]
fn both_byte_orders_and_scaling() {
    for le in [true, false] {
        let v = parse_nifti(&tiny(le, 4), Path::new("t.nii")).unwrap();
        assert_eq!(v.dims, vec![2, 3, 1]);
        assert_eq!(v.spacing[0], 1.5);
        assert_eq!(
            v.data,
            vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0],
            "little-endian {le}"
        );
    }
}

#[test]
fn bad_files_are_named_errors() {
    let e = |b: &[u8]| parse_nifti(b, Path::new("v.nii")).unwrap_err().to_string();
    let msg = e(&tiny(true, 128));
    assert!(
        msg.contains("v.nii") && msg.contains("unsupported datatype 128"),
        "{msg}"
    );
    let full = tiny(true, 4);
    let msg = e(&full[..full.len() - 2]);
    assert!(msg.contains("truncated"), "{msg}");
    assert!(e(&full[..100]).contains("shorter than a NIfTI-1 header"));
    let mut bad = full.clone();
    bad[0] = 7;
    assert!(e(&bad).contains("sizeof_hdr"));
    let mut bad = full;
    bad[344] = b'x';
    assert!(e(&bad).contains("magic"));
    let missing = read_nifti(Path::new("/nonexistent/v.nii.gz"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/v.nii.gz"), "{missing}");
}

#[test]
fn nibabel_test_volumes() {
    let Some(dir) = std::env::var_os("CNN_VOLUMES_DIR") else {
        eprintln!("skipped: set CNN_VOLUMES_DIR to run this test on the real volumes");
        return;
    };
    let dir = Path::new(&dir).join("nibabel_testdata");
    for name in ["anatomical.nii", "functional.nii", "example4d.nii.gz"] {
        let v = read_nifti(&dir.join(name)).unwrap();
        eprintln!(
            "{name}: dims {:?} datatype {} spacing {:?}",
            v.dims, v.datatype, v.spacing
        );
        assert_eq!(v.data.len(), v.dims.iter().product::<usize>(), "{name}");
        assert!(v.data.iter().all(|x| x.is_finite()), "{name}");
        assert!(v.data.iter().any(|&x| x != 0.0), "{name}: all zero");
    }
    let v = read_nifti(&dir.join("example4d.nii.gz")).unwrap();
    assert_eq!(v.dims, vec![128, 96, 24, 2]);
}

#[test]
fn hostile_offsets_and_dimensions_are_refused() {
    let e = |b: &[u8]| parse_nifti(b, Path::new("h.nii")).unwrap_err().to_string();
    let full = tiny(true, 4);
    for offset in [3e38f32, f32::INFINITY, f32::NAN, 1e9] {
        let mut bad = full.clone();
        bad[108..112].copy_from_slice(&offset.to_le_bytes());
        let msg = e(&bad);
        assert!(msg.contains("h.nii") && msg.contains("vox_offset"), "{msg}");
    }
    // Seven dimensions of 32767 each: the element count overflows 64 bits.
    let mut bad = full;
    bad[40..42].copy_from_slice(&7i16.to_le_bytes());
    for i in 1..=7 {
        bad[40 + 2 * i..42 + 2 * i].copy_from_slice(&32767i16.to_le_bytes());
    }
    let msg = e(&bad);
    assert!(msg.contains("overflow"), "{msg}");
}
