//! A table of named cells (`objects.csv`, `images.csv`): rows whose columns are the union of all
//! rows' columns, written as CSV (RFC 4180 quoting) or as a JSON array of objects.
//!
//! ```
//! use cellops_measure::objects::Cell;
//! use cellops_measure::table::Table;
//! let mut t = Table::default();
//! t.push(vec![("Image".into(), Cell::Text("a,b".into())), ("Count".into(), Cell::Int(2))]);
//! t.push(vec![("Count".into(), Cell::Int(3))]);
//! assert_eq!(t.csv(), "Image,Count\n\"a,b\",2\n,3\n");
//! ```

use crate::objects::Cell;

/// A table of rows whose columns are the union of all rows' columns, in order of appearance.
#[derive(Debug, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    index: std::collections::HashMap<String, usize>,
    /// Rows (shorter rows are padded with empty cells when written).
    pub rows: Vec<Vec<Option<Cell>>>,
}

impl Table {
    /// Adds a row of named cells.
    pub fn push(&mut self, cells: Vec<(String, Cell)>) {
        let mut row = vec![None; self.header.len()];
        for (name, cell) in cells {
            let i = match self.index.get(&name) {
                Some(&i) => i,
                None => {
                    self.header.push(name.clone());
                    self.index.insert(name, self.header.len() - 1);
                    row.push(None);
                    self.header.len() - 1
                }
            };
            if row.len() <= i {
                row.resize(i + 1, None);
            }
            row[i] = Some(cell);
        }
        self.rows.push(row);
    }

    /// The table as CSV (RFC 4180 quoting).
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
            let joined: Vec<String> = cells.map(|c| csv_field(&c)).collect();
            out.push_str(&joined.join(","));
            out.push('\n');
        };
        line(&mut out, &mut self.header.iter().cloned());
        for r in &self.rows {
            line(
                &mut out,
                &mut (0..self.header.len()).map(|i| {
                    r.get(i)
                        .and_then(|c| c.as_ref())
                        .map(ToString::to_string)
                        .unwrap_or_default()
                }),
            );
        }
        out
    }

    /// The table as a JSON array of objects (absent cells left out).
    pub fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    let mut m = serde_json::Map::new();
                    for (i, c) in r.iter().enumerate() {
                        if let Some(c) = c {
                            let v = match c {
                                Cell::Float(f) if !f.is_finite() => serde_json::Value::Null,
                                c => serde_json::to_value(c).unwrap_or(serde_json::Value::Null),
                            };
                            m.insert(self.header[i].clone(), v);
                        }
                    }
                    serde_json::Value::Object(m)
                })
                .collect(),
        )
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
