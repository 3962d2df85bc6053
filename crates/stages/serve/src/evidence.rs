//! The evidence the service keeps for the Monitor stage: one row of features per measured image
//! (what the input looked like and what the model made of it — never pixels: these are patients'
//! images), kept in memory for the drift window and, with a state folder, appended to one JSON
//! Lines file per UTC day (`features-YYYY-MM-DD.jsonl`) that a restarted service reads back.
//! Bounded both ways: at most `max_rows_per_day` rows a day (later images are counted, not kept)
//! and `retention_days` files (older ones are deleted when a day starts).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cellops_formats::serve::MonitorSettings;
use serde::{Deserialize, Serialize};

use crate::{ServeError, io};

/// The prefix of a day's file name (then the UTC date and `.jsonl`).
pub const DAY_FILE_PREFIX: &str = "features-";

/// One measured image's features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// When it was measured (Unix seconds).
    pub at: u64,
    /// Its image type.
    pub image_type: String,
    /// The bundle id of the model that segmented it.
    pub model: String,
    /// The input features, in `ImageFeatures::NAMES`' order (`null`: not defined for it).
    pub input: Vec<Option<f64>>,
    /// The grey-level histogram's shares (`HISTOGRAM_BINS` bins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<f64>>,
    /// The prediction features, in `PredictionFeatures::NAMES`' order (none without a model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Vec<Option<f64>>>,
}

/// Counts that say how complete the evidence is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows in the drift window.
    pub window_rows: usize,
    /// Rows kept today.
    pub kept_today: usize,
    /// Images measured today past `max_rows_per_day` (not kept).
    pub dropped_today: u64,
    /// Rows that could not be written to disk since the start (kept in memory).
    pub write_errors: u64,
    /// Lines of the day files that could not be read back at start (skipped).
    pub unreadable_lines: u64,
}

/// Today's file.
#[derive(Debug)]
struct Day {
    date: String,
    kept: usize,
    dropped: u64,
    file: Option<std::fs::File>,
}

#[derive(Debug)]
struct Inner {
    rows: VecDeque<Row>,
    day: Option<Day>,
    write_errors: u64,
    unreadable_lines: u64,
    /// Bumped by every kept row: a cached judgement of an older generation is stale.
    generation: u64,
}

/// The store.
#[derive(Debug)]
pub struct Evidence {
    dir: Option<PathBuf>,
    settings: MonitorSettings,
    inner: Mutex<Inner>,
}

/// The UTC date (`YYYY-MM-DD`) of a Unix time.
fn date(at: u64) -> String {
    let mut s = cellops_formats::release::rfc3339(at);
    s.truncate(10);
    s
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Evidence {
    /// A store kept in `dir` (created, mode 700, when missing) or, without one, in memory only;
    /// the rows of the drift window are read back from the day files, as of `now`.
    pub fn open(dir: Option<&Path>, settings: MonitorSettings, now: u64) -> Result<Self, ServeError> {
        let mut inner = Inner {
            rows: VecDeque::new(),
            day: None,
            write_errors: 0,
            unreadable_lines: 0,
            generation: 0,
        };
        if let Some(dir) = dir {
            create_private_dir(dir)?;
            let since = now.saturating_sub(window_secs(&settings));
            let mut files = day_files(dir)?;
            files.sort();
            for (file_date, path) in &files {
                if *file_date < date(since) {
                    continue;
                }
                let text = std::fs::read_to_string(path).map_err(io("reading the monitor's day files"))?;
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    match serde_json::from_str::<Row>(line) {
                        Ok(row) if row.at >= since => inner.rows.push_back(row),
                        Ok(_) => {}
                        Err(_) => inner.unreadable_lines += 1,
                    }
                }
                if *file_date == date(now) {
                    inner.day = Some(Day {
                        date: file_date.clone(),
                        kept: text.lines().filter(|l| !l.trim().is_empty()).count(),
                        dropped: 0,
                        file: None,
                    });
                }
            }
        }
        let store = Self {
            dir: dir.map(Path::to_owned),
            settings,
            inner: Mutex::new(inner),
        };
        store.prune(now);
        Ok(store)
    }

    /// The settings it keeps rows under.
    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Where the day files are (none: in memory only).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `row` (unless today's rows are full): in memory, and appended to today's file.
    pub fn push(&self, row: Row) {
        let today = date(row.at);
        let mut inner = self.lock();
        if inner.day.as_ref().is_none_or(|d| d.date != today) {
            inner.day = Some(Day {
                date: today.clone(),
                kept: 0,
                dropped: 0,
                file: None,
            });
            drop(inner);
            self.prune(row.at);
            inner = self.lock();
        }
        let max = self.settings.max_rows_per_day;
        let Some(day) = inner.day.as_mut() else { return };
        if day.kept >= max {
            day.dropped += 1;
            return;
        }
        day.kept += 1;
        let written = match &self.dir {
            Some(dir) => append(dir, day, &row).is_ok(),
            None => true,
        };
        if !written {
            inner.write_errors += 1;
        }
        let since = row.at.saturating_sub(window_secs(&self.settings));
        inner.rows.push_back(row);
        while inner.rows.front().is_some_and(|r| r.at < since) {
            inner.rows.pop_front();
        }
        inner.generation += 1;
    }

    /// The rows of the drift window as of `now`, and the generation they belong to.
    pub fn window(&self, now: u64) -> (Vec<Row>, u64) {
        let since = now.saturating_sub(window_secs(&self.settings));
        let inner = self.lock();
        let rows = inner.rows.iter().filter(|r| r.at >= since).cloned().collect();
        (rows, inner.generation)
    }

    /// How complete the evidence is, as of `now`.
    pub fn counts(&self, now: u64) -> Counts {
        let since = now.saturating_sub(window_secs(&self.settings));
        let inner = self.lock();
        let today = inner.day.as_ref().filter(|d| d.date == date(now));
        Counts {
            window_rows: inner.rows.iter().filter(|r| r.at >= since).count(),
            kept_today: today.map_or(0, |d| d.kept),
            dropped_today: today.map_or(0, |d| d.dropped),
            write_errors: inner.write_errors,
            unreadable_lines: inner.unreadable_lines,
        }
    }

    /// Deletes day files older than the retention (by their date, as of `now`).
    fn prune(&self, now: u64) {
        let Some(dir) = &self.dir else { return };
        let keep_from = date(now.saturating_sub(u64::from(self.settings.retention_days.saturating_sub(1)) * 86_400));
        if let Ok(files) = day_files(dir) {
            for (file_date, path) in files {
                if file_date < keep_from {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

fn window_secs(settings: &MonitorSettings) -> u64 {
    (settings.window_hours * 3600.0).round() as u64
}

/// Appends one line to the day's file (opened on first use, mode 600).
fn append(dir: &Path, day: &mut Day, row: &Row) -> std::io::Result<()> {
    if day.file.is_none() {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        day.file = Some(options.open(dir.join(format!("{DAY_FILE_PREFIX}{}.jsonl", day.date)))?);
    }
    let mut line = serde_json::to_vec(row).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // One write of the whole line: O_APPEND keeps lines whole.
    day.file.as_mut().map_or(Ok(()), |f| f.write_all(&line))
}

/// The day files in `dir`, with their dates.
fn day_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, ServeError> {
    let entries = std::fs::read_dir(dir).map_err(io("reading the monitor's state folder"))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let d = name.strip_prefix(DAY_FILE_PREFIX)?.strip_suffix(".jsonl")?;
            (d.len() == 10).then(|| (d.to_owned(), e.path()))
        })
        .collect())
}

fn create_private_dir(dir: &Path) -> Result<(), ServeError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io("creating the monitor's state folder"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    /// 2026-12-07T00:00:00Z.
    const T0: u64 = 1_796_601_600;

    fn row(at: u64, mean: f64) -> Row {
        Row {
            at,
            image_type: "dapi".into(),
            model: "abc".into(),
            input: vec![Some(mean); 14],
            histogram: None,
            prediction: Some(vec![Some(3.0), None, None, None, Some(0.0)]),
        }
    }

    #[test]
    fn rows_survive_a_restart_and_leave_the_window_in_time() {
        assert_eq!(date(T0), "2026-12-07");
        let tmp = tempfile::tempdir().expect("tmp");
        let settings = MonitorSettings::default();
        let store = Evidence::open(Some(tmp.path()), settings.clone(), T0).expect("open");
        store.push(row(T0 + 10, 0.1));
        store.push(row(T0 + DAY + 5, 0.2));
        let (rows, generation) = store.window(T0 + DAY + 6);
        assert_eq!((rows.len(), generation), (2, 2));
        drop(store);
        let again = Evidence::open(Some(tmp.path()), settings, T0 + DAY + 6).expect("reopen");
        assert_eq!(again.window(T0 + DAY + 6).0, rows);
        assert_eq!(again.counts(T0 + DAY + 6).kept_today, 1);
        // A day later the first row has left the 24-hour window.
        assert_eq!(again.window(T0 + DAY + 11).0.len(), 1);
    }

    #[test]
    fn days_are_capped_and_old_files_deleted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let settings = MonitorSettings {
            max_rows_per_day: 2,
            retention_days: 2,
            ..MonitorSettings::default()
        };
        let store = Evidence::open(Some(tmp.path()), settings, T0).expect("open");
        for k in 0..5 {
            store.push(row(T0 + k, 0.1));
        }
        let c = store.counts(T0 + 5);
        assert_eq!((c.kept_today, c.dropped_today, c.window_rows), (2, 3, 2));
        store.push(row(T0 + 2 * DAY, 0.1));
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // Two days kept: the first day's file went when the third began.
        assert_eq!(names, ["features-2026-12-09.jsonl"]);
    }

    #[test]
    fn a_damaged_line_is_skipped_and_counted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let good = serde_json::to_string(&row(T0 + 1, 0.3)).expect("json");
        std::fs::write(
            tmp.path().join("features-2026-12-07.jsonl"),
            format!("{good}\n{{\"at\": 12, \"trunc\n"),
        )
        .expect("write");
        let store = Evidence::open(Some(tmp.path()), MonitorSettings::default(), T0 + 2).expect("open");
        let c = store.counts(T0 + 2);
        assert_eq!((c.window_rows, c.unreadable_lines), (1, 1));
    }
}
