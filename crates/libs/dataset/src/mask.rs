//! Turning a decoded mask file into instance labels, and recognising masks that are not usable.

use crate::ops::label::{Connectivity, connected_components, relabel_sequential};
use crate::problem::ProblemKind;
use crate::raster::{Labels, Raster, Samples};

pub use cellops_formats::dataset::MaskKind;

/// A mask file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskDefect {
    /// The kind of problem.
    pub kind: ProblemKind,
    /// What is wrong, for a person.
    pub message: String,
}

fn grey_values(raster: &Raster) -> Result<Vec<u16>, MaskDefect> {
    let c = raster.channels as usize;
    let take = |i: usize| -> Vec<u16> {
        match &raster.samples {
            Samples::U8(d) => d.iter().skip(i).step_by(c).map(|&v| u16::from(v)).collect(),
            Samples::U16(d) => d.iter().skip(i).step_by(c).copied().collect(),
        }
    };
    let grey = if c == 1 {
        match &raster.samples {
            Samples::U8(d) => d.iter().map(|&v| u16::from(v)).collect(),
            Samples::U16(d) => d.clone(),
        }
    } else {
        take(0)
    };
    if c >= 3 {
        // Colour masks are accepted only when all colour channels agree (a grey mask saved as RGB).
        for ch in 1..3 {
            if take(ch) != grey {
                return Err(MaskDefect {
                    kind: ProblemKind::ColourMask,
                    message: format!(
                        "mask has {c} channels with different values; save masks as 8- or 16-bit grey labels"
                    ),
                });
            }
        }
    }
    Ok(grey)
}

/// How a mask's values encode its objects: one distinct non-zero value (or none) is a binary
/// mask, more are instance labels.
///
/// ```
/// use cellops_dataset::mask::{encoding, MaskKind};
/// assert_eq!(encoding([0, 255, 0, 255]), MaskKind::Binary);
/// assert_eq!(encoding([0, 1, 2, 2]), MaskKind::Instance);
/// ```
pub fn encoding(values: impl IntoIterator<Item = u32>) -> MaskKind {
    let mut first = None;
    for v in values.into_iter().filter(|&v| v != 0) {
        match first {
            None => first = Some(v),
            Some(f) if f != v => return MaskKind::Instance,
            Some(_) => {}
        }
    }
    MaskKind::Binary
}

/// Reads labels from a decoded mask: binary masks are split into connected components, instance
/// labels are renumbered 1..=N in raster order (so the largest label is the object count). Anti-aliased binary masks are refused.
///
/// A mask is judged anti-aliased when it has more than one non-zero value, its largest value covers
/// at least half of the foreground, and at least 90 % of the other non-zero pixels touch that value:
/// the signature of edge smoothing, which instance labels (whose objects do not ring one another)
/// do not have.
///
/// ```
/// use cellops_dataset::{Raster, mask::{interpret, MaskKind}};
/// let m = Raster::from_u8(4, 1, 1, vec![0, 255, 0, 255]);
/// let (labels, kind) = interpret(&m).unwrap();
/// assert_eq!((labels.data, kind), (vec![0, 1, 0, 2], MaskKind::Binary));
/// ```
pub fn interpret(raster: &Raster) -> Result<(Labels, MaskKind), MaskDefect> {
    let (w, h) = (raster.width, raster.height);
    let mut values = grey_values(raster)?;
    let mut counts = vec![0u32; 65536];
    for &v in &values {
        counts[v as usize] += 1;
    }
    let nonzero: Vec<usize> = (1..65536).filter(|&v| counts[v] > 0).collect();
    if encoding(values.iter().map(|&v| u32::from(v))) == MaskKind::Binary {
        let fg: Vec<bool> = values.iter().map(|&v| v != 0).collect();
        let (labels, n) = connected_components(&fg, w as usize, Connectivity::Eight);
        if n > usize::from(u16::MAX) {
            return Err(too_many(n));
        }
        let data = labels.into_iter().map(|l| l as u16).collect();
        return Ok((Labels::new(w, h, data), MaskKind::Binary));
    }
    let max = *nonzero.last().unwrap_or(&1);
    let foreground: u64 = nonzero.iter().map(|&v| u64::from(counts[v])).sum();
    if u64::from(counts[max]) * 2 >= foreground {
        let (wu, hu) = (w as usize, h as usize);
        let mut others = 0u64;
        let mut touching = 0u64;
        for y in 0..hu {
            for x in 0..wu {
                let v = values[y * wu + x] as usize;
                if v == 0 || v == max {
                    continue;
                }
                others += 1;
                let at = |xx: usize, yy: usize| values[yy * wu + xx] as usize == max;
                if (x > 0 && at(x - 1, y))
                    || (x + 1 < wu && at(x + 1, y))
                    || (y > 0 && at(x, y - 1))
                    || (y + 1 < hu && at(x, y + 1))
                {
                    touching += 1;
                }
            }
        }
        if touching * 10 >= others * 9 {
            return Err(MaskDefect {
                kind: ProblemKind::AntiAliasedMask,
                message: format!(
                    "binary mask has {} values besides 0 and {max} along object edges (anti-aliased?); \
                     masks must hold exact labels",
                    nonzero.len() - 1
                ),
            });
        }
    }
    relabel_sequential(&mut values);
    Ok((Labels::new(w, h, values), MaskKind::Instance))
}

fn too_many(n: usize) -> MaskDefect {
    MaskDefect {
        kind: ProblemKind::Unsupported,
        message: format!("mask has {n} objects; at most 65535 fit in 16-bit labels"),
    }
}

/// Combines per-object binary masks (DSB2018) into labels 1..=N in the given order. Returns the
/// labels and the number of pixels claimed by more than one object (the first claim wins).
pub fn combine_objects(parts: &[Raster]) -> Result<(Labels, u64), MaskDefect> {
    let Some(first) = parts.first() else {
        return Err(MaskDefect {
            kind: ProblemKind::EmptyMask,
            message: "no object masks".into(),
        });
    };
    if parts.len() > usize::from(u16::MAX) {
        return Err(too_many(parts.len()));
    }
    let (w, h) = (first.width, first.height);
    let mut data = vec![0u16; w as usize * h as usize];
    let mut overlap = 0u64;
    for (i, part) in parts.iter().enumerate() {
        if (part.width, part.height) != (w, h) {
            return Err(MaskDefect {
                kind: ProblemKind::SizeMismatch,
                message: format!(
                    "object mask {} is {}x{}, the first is {w}x{h}",
                    i + 1,
                    part.width,
                    part.height
                ),
            });
        }
        let values = grey_values(part)?;
        for (d, &v) in data.iter_mut().zip(&values) {
            if v != 0 {
                if *d == 0 {
                    *d = (i + 1) as u16;
                } else {
                    overlap += 1;
                }
            }
        }
    }
    relabel_sequential(&mut data);
    Ok((Labels::new(w, h, data), overlap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_labels_are_renumbered() {
        let m = Raster::from_u16(5, 1, 1, vec![0, 900, 900, 0, 4]);
        let (l, k) = interpret(&m).expect("ok");
        assert_eq!(k, MaskKind::Instance);
        assert_eq!(l.data, vec![0, 1, 1, 0, 2]);
    }

    #[test]
    fn anti_aliased_binary_is_refused() {
        #[rustfmt::skip]
        let px = vec![
            0,   0,   0,   0, 0,
            0, 128, 255, 128, 0,
            0, 255, 255, 255, 0,
            0, 128, 255,  64, 0,
        ];
        let err = interpret(&Raster::from_u8(5, 4, 1, px)).expect_err("anti-aliased");
        assert_eq!(err.kind, ProblemKind::AntiAliasedMask);
    }

    #[test]
    fn labels_where_the_largest_dominates_but_do_not_ring_it_are_instances() {
        // Object 3 is big; objects 1 and 2 are apart from it.
        let mut px = vec![0u8; 10 * 4];
        for (i, v) in px.iter_mut().enumerate() {
            if i % 10 >= 5 {
                *v = 3;
            }
        }
        px[0] = 1;
        px[20] = 2;
        let (l, k) = interpret(&Raster::from_u8(10, 4, 1, px)).expect("instances");
        assert_eq!((k, l.count_objects()), (MaskKind::Instance, 3));
    }

    #[test]
    fn colour_mask_with_differing_channels_is_refused() {
        let m = Raster::from_u8(1, 1, 3, vec![1, 2, 3]);
        assert_eq!(interpret(&m).expect_err("colour").kind, ProblemKind::ColourMask);
        let grey_as_rgb = Raster::from_u8(2, 1, 3, vec![0, 0, 0, 5, 5, 5]);
        assert_eq!(interpret(&grey_as_rgb).expect("grey").0.data, vec![0, 1]);
    }

    #[test]
    fn per_object_masks_combine_and_count_overlap() {
        let a = Raster::from_u8(3, 1, 1, vec![255, 255, 0]);
        let b = Raster::from_u8(3, 1, 1, vec![0, 255, 255]);
        let (l, overlap) = combine_objects(&[a, b]).expect("ok");
        assert_eq!((l.data, overlap), (vec![1, 1, 2], 1));
    }
}
