//! In-memory images and instance-label masks.

/// A sample type of an image: 8-bit or 16-bit unsigned.
pub trait Sample: Copy + Default + Send + Sync + Into<u32> + 'static {
    /// Number of distinct values (histogram bins): 256 or 65536.
    const BINS: usize;
    /// The largest value.
    const MAX: u32;
    /// Converts a value already known to be in `0..=MAX`.
    fn from_u32(v: u32) -> Self;
    /// Rounds (half up) and saturates a float into the sample range. Clamping first makes the value
    /// non-negative, so adding one half and truncating rounds without a library call.
    #[inline]
    fn saturate(v: f32) -> Self {
        Self::from_u32((v.clamp(0.0, Self::MAX as f32) + 0.5) as u32)
    }
    /// The value as a histogram index.
    fn index(self) -> usize {
        let v: u32 = self.into();
        v as usize
    }
}

impl Sample for u8 {
    const BINS: usize = 256;
    const MAX: u32 = 255;
    fn from_u32(v: u32) -> Self {
        v as u8
    }
}

impl Sample for u16 {
    const BINS: usize = 65536;
    const MAX: u32 = 65535;
    fn from_u32(v: u32) -> Self {
        v as u16
    }
}

/// Interleaved samples of a [`Raster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Samples {
    /// 8 bits per sample.
    U8(Vec<u8>),
    /// 16 bits per sample.
    U16(Vec<u16>),
}

impl Samples {
    /// Bits per sample.
    pub fn bit_depth(&self) -> u8 {
        match self {
            Samples::U8(_) => 8,
            Samples::U16(_) => 16,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An image: `channels` interleaved samples per pixel, rows top to bottom.
///
/// Channels are 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel.
    pub channels: u8,
    /// The samples, `width * height * channels` of them.
    pub samples: Samples,
}

impl Raster {
    /// An 8-bit image from samples.
    ///
    /// ```
    /// let r = cellops_dataset::Raster::from_u8(2, 1, 1, vec![0, 255]);
    /// assert_eq!(r.pixels(), 2);
    /// ```
    pub fn from_u8(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize * channels as usize);
        Self {
            width,
            height,
            channels,
            samples: Samples::U8(data),
        }
    }

    /// A 16-bit image from samples.
    pub fn from_u16(width: u32, height: u32, channels: u8, data: Vec<u16>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize * channels as usize);
        Self {
            width,
            height,
            channels,
            samples: Samples::U16(data),
        }
    }

    /// Number of pixels.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Whether the image has colour channels (RGB or RGBA).
    pub fn is_colour(&self) -> bool {
        self.channels >= 3
    }
}

/// An instance-label mask: 0 is background, each other value one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// One label per pixel, rows top to bottom.
    pub data: Vec<u16>,
}

impl Labels {
    /// A mask from labels.
    pub fn new(width: u32, height: u32, data: Vec<u16>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize);
        Self { width, height, data }
    }

    /// Number of distinct non-zero labels.
    ///
    /// ```
    /// let m = cellops_dataset::Labels::new(3, 1, vec![0, 7, 2]);
    /// assert_eq!(m.count_objects(), 2);
    /// ```
    pub fn count_objects(&self) -> usize {
        let mut seen = vec![false; 65536];
        let mut n = 0;
        for &l in &self.data {
            if l != 0 && !seen[l as usize] {
                seen[l as usize] = true;
                n += 1;
            }
        }
        n
    }
}
