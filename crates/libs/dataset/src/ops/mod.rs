//! Image operations, one module per family (in the manner of imageproc).

pub mod colour;
pub mod equalize;
pub mod features;
pub mod label;
pub mod normalize;
pub mod polarity;
pub mod resize;
pub mod scale;
pub mod tile;
