//! Resizing images (filtered) and masks (label-preserving nearest neighbour).

use crate::raster::{Labels, Raster, Samples};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image};

pub use cellops_formats::preprocessing::Filter;

fn algorithm(filter: Filter) -> ResizeAlg {
    match filter {
        Filter::Nearest => ResizeAlg::Nearest,
        Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
        Filter::Area => ResizeAlg::Convolution(FilterType::Box),
        Filter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
        Filter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
    }
}

/// Why a resize failed (only for shapes the resizer cannot handle).
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    /// A target size of zero, or an image whose channel count is not 1 or 3.
    #[error("cannot resize a {channels}-channel image to {width}x{height}")]
    Shape {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// The image's channels.
        channels: u8,
    },
    /// The resizer refused the buffers.
    #[error("resize failed: {0}")]
    Resizer(String),
}

/// Resizes a 1- or 3-channel image to `width` x `height` with `filter`.
///
/// ```
/// use cellops_dataset::{Raster, ops::resize::{resize_image, Filter}};
/// let img = Raster::from_u8(4, 4, 1, vec![100; 16]);
/// let small = resize_image(&img, 2, 2, Filter::Area).unwrap();
/// assert_eq!((small.width, small.height), (2, 2));
/// assert_eq!(small.samples, cellops_dataset::Samples::U8(vec![100; 4]));
/// ```
pub fn resize_image(img: &Raster, width: u32, height: u32, filter: Filter) -> Result<Raster, ResizeError> {
    if width == img.width && height == img.height {
        return Ok(img.clone());
    }
    let shape_err = || ResizeError::Shape {
        width,
        height,
        channels: img.channels,
    };
    if width == 0 || height == 0 {
        return Err(shape_err());
    }
    let err = |e: &dyn std::fmt::Display| ResizeError::Resizer(e.to_string());
    let opts = ResizeOptions::new().resize_alg(algorithm(filter));
    let mut resizer = Resizer::new();
    match &img.samples {
        Samples::U8(data) => {
            let pt = match img.channels {
                1 => PixelType::U8,
                3 => PixelType::U8x3,
                _ => return Err(shape_err()),
            };
            let src = Image::from_vec_u8(img.width, img.height, data.clone(), pt).map_err(|e| err(&e))?;
            let mut dst = Image::new(width, height, pt);
            resizer.resize(&src, &mut dst, &opts).map_err(|e| err(&e))?;
            Ok(Raster::from_u8(width, height, img.channels, dst.into_vec()))
        }
        Samples::U16(data) => {
            let pt = match img.channels {
                1 => PixelType::U16,
                3 => PixelType::U16x3,
                _ => return Err(shape_err()),
            };
            let mut src_data = data.clone();
            let src = Image::from_slice_u8(img.width, img.height, bytemuck::cast_slice_mut(&mut src_data), pt)
                .map_err(|e| err(&e))?;
            let n = width as usize * height as usize * img.channels as usize;
            let mut out = vec![0u16; n];
            let mut dst =
                Image::from_slice_u8(width, height, bytemuck::cast_slice_mut(&mut out), pt).map_err(|e| err(&e))?;
            resizer.resize(&src, &mut dst, &opts).map_err(|e| err(&e))?;
            Ok(Raster::from_u16(width, height, img.channels, out))
        }
    }
}

/// Resizes a label mask by nearest neighbour, sampling each target pixel's centre, so that labels
/// are never blended into values that name no object.
///
/// ```
/// use cellops_dataset::{Labels, ops::resize::resize_labels};
/// let m = Labels::new(2, 1, vec![3, 9]);
/// assert_eq!(resize_labels(&m, 4, 1).data, vec![3, 3, 9, 9]);
/// ```
pub fn resize_labels(mask: &Labels, width: u32, height: u32) -> Labels {
    if width == mask.width && height == mask.height {
        return mask.clone();
    }
    let sx = f64::from(mask.width) / f64::from(width);
    let sy = f64::from(mask.height) / f64::from(height);
    let cols: Vec<usize> = (0..width)
        .map(|x| (((f64::from(x) + 0.5) * sx) as usize).min(mask.width as usize - 1))
        .collect();
    let mut data = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height {
        let sy = (((f64::from(y) + 0.5) * sy) as usize).min(mask.height as usize - 1);
        let row = &mask.data[sy * mask.width as usize..][..mask.width as usize];
        data.extend(cols.iter().map(|&c| row[c]));
    }
    Labels::new(width, height, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sixteen_bit_rgb_resizes() {
        let img = Raster::from_u16(3, 3, 3, vec![1000; 27]);
        let out = resize_image(&img, 6, 5, Filter::Bilinear).expect("resize");
        assert_eq!(out.samples, Samples::U16(vec![1000; 90]));
    }

    proptest! {
        #[test]
        fn nearest_labels_are_a_subset(
            w in 1u32..30, h in 1u32..30, tw in 1u32..50, th in 1u32..50,
            seed in any::<u64>()
        ) {
            let data: Vec<u16> = (0..w * h).map(|i| ((seed >> (i % 60)) & 7) as u16).collect();
            let m = Labels::new(w, h, data.clone());
            let r = resize_labels(&m, tw, th);
            prop_assert_eq!(r.data.len(), (tw * th) as usize);
            for l in &r.data {
                prop_assert!(data.contains(l));
            }
        }
    }
}
