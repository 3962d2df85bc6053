//! Assigning items to train / val / test.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::Split;
use crate::layout::{Item, Subset};
use crate::problem::{Problem, ProblemKind};
pub use cellops_formats::dataset::{SplitError, read_split_file};

/// The deterministic position of an item in the seeded shuffle.
fn rank(seed: u64, id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.as_bytes());
    h.finalize().into()
}

/// Assigns each item a split: from the split file if one is given, else the folder it was found in,
/// else a seeded shuffle cut at the configured fractions (exact counts, and an item's place depends
/// only on the seed and its own id, so adding items moves few others).
pub fn assign(
    items: &[Item],
    cfg: &Split,
    file: Option<&HashMap<String, Subset>>,
) -> (Vec<Option<Subset>>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut out: Vec<Option<Subset>> = items.iter().map(|i| i.given_split).collect();
    if let Some(map) = file {
        for (slot, item) in out.iter_mut().zip(items) {
            match map.get(&item.id) {
                Some(&s) => {
                    if let Some(given) = item.given_split
                        && given != s
                    {
                        problems.push(Problem::warning(
                            ProblemKind::Split,
                            &item.image,
                            format!("found under {}/ but the split file says {}", given.as_str(), s.as_str()),
                        ));
                    }
                    *slot = Some(s);
                }
                None => {
                    problems.push(Problem::error(
                        ProblemKind::Split,
                        &item.image,
                        format!("`{}` is not in the split file", item.id),
                    ));
                    *slot = None;
                }
            }
        }
        return (out, problems);
    }
    let mut free: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    free.sort_by_key(|&i| rank(cfg.seed, &items[i].id));
    let n = free.len() as f64;
    let n_test = (n * cfg.test_fraction).round() as usize;
    let n_val = (n * cfg.val_fraction).round() as usize;
    for (k, &i) in free.iter().enumerate() {
        out[i] = Some(if k < n_test {
            Subset::Test
        } else if k < n_test + n_val {
            Subset::Val
        } else {
            Subset::Train
        });
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::MaskSource;
    use std::path::PathBuf;

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                id: format!("img{i}"),
                given_split: None,
                image: PathBuf::from(format!("original/img{i}.png")),
                mask: MaskSource::File(PathBuf::from(format!("masks/img{i}_mask.png"))),
            })
            .collect()
    }

    #[test]
    fn seeded_split_is_exact_and_stable() {
        let cfg = Split::default();
        let (a, _) = assign(&items(100), &cfg, None);
        let count = |s| a.iter().filter(|x| **x == Some(s)).count();
        assert_eq!(
            (count(Subset::Train), count(Subset::Val), count(Subset::Test)),
            (70, 15, 15)
        );
        assert_eq!(assign(&items(100), &cfg, None).0, a, "deterministic");
        let other = Split { seed: 43, ..cfg };
        assert_ne!(assign(&items(100), &other, None).0, a, "seed matters");
    }

    #[test]
    fn split_file_wins_and_missing_ids_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("m.csv");
        std::fs::write(&f, "id,category,split\nimg0,x,test\nimg1,x,validation\n").expect("write");
        let map = read_split_file(&f).expect("read");
        let (a, p) = assign(&items(3), &Split::default(), Some(&map));
        assert_eq!(a, vec![Some(Subset::Test), Some(Subset::Val), None]);
        assert_eq!(p.len(), 1);
        std::fs::write(&f, "id,split\nimg0,holdout\n").expect("write");
        let e = read_split_file(&f).expect_err("bad split");
        assert!(
            e.to_string()
                .ends_with("m.csv:2: unknown split `holdout` (use train, val or test)"),
            "{e}"
        );
    }
}
