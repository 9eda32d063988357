//! The image reader against damaged files: a cut-off JPEG or PNG is an error naming the
//! problem, never a silently grey-filled picture.

use nn::data::{DEFAULT_MAX_PIXELS, decode_image};

fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
    })
}

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(vec![]);
    picture().write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn truncated_jpeg_and_png_are_errors_and_trailing_bytes_are_not() {
    let jpeg = encoded(image::ImageFormat::Jpeg);
    assert!(decode_image(&jpeg, DEFAULT_MAX_PIXELS).is_ok());
    for keep in [jpeg.len() * 6 / 10, jpeg.len() - 2] {
        let e = decode_image(&jpeg[..keep], DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(e.contains("truncated"), "{keep}: {e}");
    }
    // Bytes after the end marker (some cameras append data) are not damage.
    let mut trailing = jpeg.clone();
    trailing.extend([0u8; 100]);
    assert!(decode_image(&trailing, DEFAULT_MAX_PIXELS).is_ok());
    let png = encoded(image::ImageFormat::Png);
    assert!(decode_image(&png, DEFAULT_MAX_PIXELS).is_ok());
    assert!(decode_image(&png[..png.len() * 6 / 10], DEFAULT_MAX_PIXELS).is_err());
}
