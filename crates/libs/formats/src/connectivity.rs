//! Pixel connectivity.
//!
//! ```
//! use cellops_formats::Connectivity;
//! let c: Connectivity = serde_json::from_str("4").expect("4 or 8");
//! assert_eq!(c, Connectivity::Four);
//! assert!(serde_json::from_str::<Connectivity>("6").is_err());
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which neighbours join pixels into one object; written `4` or `8` in files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u8", into = "u8")]
#[schemars(with = "ConnectivityNumber")]
pub enum Connectivity {
    /// Edge neighbours only (4-connectivity).
    Four,
    /// Edge and corner neighbours (8-connectivity; scikit-image's default for 2-D `label`).
    #[default]
    Eight,
}

/// The schema of [`Connectivity`]: the integer 4 or 8.
#[derive(JsonSchema)]
#[schemars(extend("enum" = [4, 8]))]
#[allow(dead_code, reason = "only its JSON Schema is used, never a value")]
struct ConnectivityNumber(u8);

impl TryFrom<u8> for Connectivity {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            4 => Ok(Connectivity::Four),
            8 => Ok(Connectivity::Eight),
            _ => Err(format!("connectivity must be 4 or 8, not {v}")),
        }
    }
}

impl From<Connectivity> for u8 {
    fn from(c: Connectivity) -> u8 {
        match c {
            Connectivity::Four => 4,
            Connectivity::Eight => 8,
        }
    }
}
