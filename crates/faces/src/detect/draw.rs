//! Faces drawn on their photo: boxes, the 68 landmarks, and a label above each box.

use image::RgbImage;

use super::Face;

/// Box and label colour of a face: green for a name, orange for `unknown`, blue without a
/// label.
fn colour(label: Option<&str>) -> [u8; 3] {
    match label {
        None => [40, 120, 255],
        Some("unknown") => [255, 140, 0],
        Some(_) => [30, 200, 60],
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, image::Rgb(c));
    }
}

fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
    for y in y0.max(0)..y1.min(i64::from(img.height())) {
        for x in x0.max(0)..x1.min(i64::from(img.width())) {
            put(img, x, y, c);
        }
    }
}

/// Draws each face's box (clipped to the image), its landmarks and, when given, its label on
/// a filled band above the box.
pub fn draw_faces(img: &mut RgbImage, faces: &[(&Face, Option<&str>)]) {
    let short = i64::from(img.width().min(img.height()));
    let thick = (short / 200).max(2);
    let font = (short / 300).max(1);
    for (face, label) in faces {
        let d = &face.detection;
        let c = colour(*label);
        let (x0, y0) = (d.x.round() as i64, d.y.round() as i64);
        let (x1, y1) = (
            (d.x + d.width).round() as i64,
            (d.y + d.height).round() as i64,
        );
        fill(img, x0 - thick, y0 - thick, x1 + thick, y0, c);
        fill(img, x0 - thick, y1, x1 + thick, y1 + thick, c);
        fill(img, x0 - thick, y0, x0, y1, c);
        fill(img, x1, y0, x1 + thick, y1, c);
        if let Some(lm) = &face.landmarks {
            for p in lm {
                let (px, py) = (p[0].round() as i64, p[1].round() as i64);
                fill(
                    img,
                    px - thick / 2,
                    py - thick / 2,
                    px + thick / 2 + 1,
                    py + thick / 2 + 1,
                    [255, 255, 0],
                );
            }
        }
        if let Some(text) = label {
            let (w, h) = nn::plot::text_size(text, font);
            let (tw, th) = (i64::from(w) + 2 * font, i64::from(h) + 2 * font);
            // Above the box, or inside its top when the box touches the top of the image.
            let ty = if y0 - thick - th >= 0 {
                y0 - thick - th
            } else {
                y0
            };
            fill(img, x0 - thick, ty, x0 - thick + tw, ty + th, c);
            nn::plot::draw_text(
                img,
                x0 - thick + font,
                ty + font,
                text,
                [255, 255, 255],
                font,
            );
        }
    }
}
