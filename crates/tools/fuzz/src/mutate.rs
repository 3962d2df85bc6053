//! Seeded mutations of seed inputs.

/// xorshift64*: small, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is moved off the fixed point).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Bytes parsers treat specially.
const BYTES: &[u8] = b"\0\xff\x7f\x80\"':{}[]-\n\r\t #&*!|>%@`,\\0123456789.eE+";

/// Tokens of the syntaxes the targets read (YAML, JSON, numbers, TIFF and PNG fragments).
const TOKENS: &[&[u8]] = &[
    b"null",
    b"~",
    b"true",
    b"1e999",
    b"-1e999",
    b"NaN",
    b".nan",
    b".inf",
    b"-.inf",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"4294967296",
    b"&a [*a, *a, *a, *a]",
    b"*a",
    b"<<: *a",
    b"!!binary AAAA",
    b"!!str",
    b"? ",
    b"- ",
    b": ",
    b"{\"",
    b"[[[[[[[[[[[[[[[[",
    b"]]]]]]]]",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"%YAML 1.2\n---\n",
    b"\n...\n",
    b"II*\0",
    b"MM\0*",
    b"\x89PNG\r\n\x1a\n",
    b"IHDR",
    b"IDAT",
    b"\xff\xff\xff\x7f",
    b"\0\0\0\0",
];

/// Case `case`'s input: a seed (case 0 and every 64th: one unchanged, so accepted inputs keep
/// being exercised) with one to four mutations.
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], case: u64) -> Vec<u8> {
    let pick = rng.below(seeds.len());
    let mut data = seeds.get(pick).cloned().unwrap_or_default();
    if case.is_multiple_of(64) {
        return data;
    }
    for _ in 0..=rng.below(4) {
        one(rng, &mut data, seeds);
    }
    data
}

fn one(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = data.len();
    let at = rng.below(len + 1);
    match rng.below(10) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = BYTES[rng.below(BYTES.len())];
        }
        2 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, bytes);
        }
        3 | 4 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            data.splice(at..at, token.iter().copied());
        }
        5 if len > 0 => {
            let end = (at + 1 + rng.below(32)).min(len);
            data.drain(at.min(end)..end);
        }
        6 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64)).min(len);
            let piece = data[start..end].to_vec();
            data.splice(at..at, piece);
        }
        7 => {
            if let Some(other) = seeds.get(rng.below(seeds.len())).filter(|s| !s.is_empty()) {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(128)).min(other.len());
                data.splice(at..at, other[start..end].iter().copied());
            }
        }
        8 if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        _ => data.truncate(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_cases() {
        let seeds = vec![b"description: x\npixel_size_um: 0.5\n".to_vec(), b"{}".to_vec()];
        let cases = |seed| {
            let mut rng = Rng::new(seed);
            (0..200).map(|c| mutate(&mut rng, &seeds, c)).collect::<Vec<_>>()
        };
        assert_eq!(cases(7), cases(7));
        assert_ne!(cases(7), cases(8));
        // Every 64th case is a seed as it is; the others mostly are not.
        let c = cases(7);
        assert!(seeds.contains(&c[64]));
        assert!(c.iter().filter(|x| !seeds.contains(x)).count() > 150);
    }
}
