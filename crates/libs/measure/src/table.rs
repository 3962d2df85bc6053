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
                            m.insert(self.header[i].clone(), cell_json(c));
                        }
                    }
                    serde_json::Value::Object(m)
                })
                .collect(),
        )
    }
}

/// A cell as JSON (non-finite numbers as `null`).
fn cell_json(c: &Cell) -> serde_json::Value {
    match c {
        Cell::Float(f) if !f.is_finite() => serde_json::Value::Null,
        c => serde_json::to_value(c).unwrap_or(serde_json::Value::Null),
    }
}

/// A table written as its rows come (a slide's hundreds of thousands of nuclei are never held):
/// CSV to one writer and a JSON array of objects, one per line, to the other, as [`Table`] writes
/// them. The columns are the first row's; a later row with a column the first did not have is
/// refused (its cells would have no place in the header already written).
pub struct Stream<C: std::io::Write, J: std::io::Write> {
    header: Vec<String>,
    index: std::collections::HashMap<String, usize>,
    csv: C,
    json: J,
    rows: usize,
}

impl<C: std::io::Write, J: std::io::Write> Stream<C, J> {
    /// A table with no rows yet.
    pub fn new(csv: C, json: J) -> Self {
        Self {
            header: Vec::new(),
            index: std::collections::HashMap::new(),
            csv,
            json,
            rows: 0,
        }
    }

    /// Writes a row of named cells.
    ///
    /// ```
    /// use cellops_measure::objects::Cell;
    /// use cellops_measure::table::Stream;
    /// let (mut csv, mut json) = (Vec::new(), Vec::new());
    /// let mut t = Stream::new(&mut csv, &mut json);
    /// t.push(&[("Image".into(), Cell::Text("a,b".into())), ("Count".into(), Cell::Int(2))]).unwrap();
    /// t.push(&[("Count".into(), Cell::Int(3))]).unwrap();
    /// assert!(t.push(&[("Other".into(), Cell::Int(3))]).is_err());
    /// assert_eq!(t.finish().unwrap(), 2);
    /// assert_eq!(String::from_utf8(csv).unwrap(), "Image,Count\n\"a,b\",2\n,3\n");
    /// // Keys in the order Table::json gives them (serde_json's maps are sorted).
    /// assert_eq!(String::from_utf8(json).unwrap(), "[\n{\"Count\":2,\"Image\":\"a,b\"},\n{\"Count\":3}\n]\n");
    /// ```
    pub fn push(&mut self, cells: &[(String, Cell)]) -> std::io::Result<()> {
        if self.rows == 0 {
            self.header = cells.iter().map(|(k, _)| k.clone()).collect();
            self.index = self.header.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect();
            let line: Vec<String> = self.header.iter().map(|h| csv_field(h)).collect();
            writeln!(self.csv, "{}", line.join(","))?;
            self.json.write_all(b"[\n")?;
        }
        let mut row = vec![String::new(); self.header.len()];
        let mut object = serde_json::Map::new();
        for (name, cell) in cells {
            let &i = self.index.get(name).ok_or_else(|| {
                std::io::Error::other(format!(
                    "a row has the column {name}, which the table's first row has not"
                ))
            })?;
            row[i] = csv_field(&cell.to_string());
            object.insert(name.clone(), cell_json(cell));
        }
        writeln!(self.csv, "{}", row.join(","))?;
        if self.rows > 0 {
            self.json.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.json, &object)?;
        self.rows += 1;
        Ok(())
    }

    /// Ends both files; returns the rows written.
    pub fn finish(mut self) -> std::io::Result<usize> {
        if self.rows == 0 {
            self.csv.write_all(b"\n")?;
            self.json.write_all(b"[\n")?;
        }
        self.json.write_all(b"\n]\n")?;
        self.csv.flush()?;
        self.json.flush()?;
        Ok(self.rows)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
