//! A real headless Chromium for tests, driven over the W3C WebDriver protocol by `chromedriver`
//! on 127.0.0.1: open a page, set a file input, click, run a script, wait for a condition.
//! Downloads land in a folder the test gives. Used by the service's page test.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver and the browser end when it is dropped.
#[derive(Debug)]
pub struct Browser {
    base: String,
    driver: Child,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium that downloads into
    /// `downloads` without asking.
    pub fn start(downloads: &Path) -> io::Result<Self> {
        let missing = |what: &str| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{what} not found: apt-get install chromium chromium-driver"),
            )
        };
        let driver_bin = find(&["chromedriver"]).ok_or_else(|| missing("chromedriver"))?;
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"]).ok_or_else(|| missing("chromium"))?;
        let port = crate::free_port()?;
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut me = Self {
            base: format!("http://127.0.0.1:{port}"),
            driver,
        };
        me.wait_for_driver()?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false
                }
            }
        }}});
        let session = me.call("POST", "/session", &caps)?;
        let id = session["sessionId"]
            .as_str()
            .ok_or_else(|| other(format!("no session: {session}")))?;
        me.base = format!("{}/session/{id}", me.base);
        Ok(me)
    }

    fn wait_for_driver(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = self.call("GET", "/status", &Value::Null)
                && status["ready"] == true
            {
                return Ok(());
            }
            if let Some(exit) = self.driver.try_wait()? {
                return Err(other(format!("chromedriver exited ({exit})")));
            }
            if Instant::now() > deadline {
                return Err(other("chromedriver did not answer within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command: its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: &Value) -> io::Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).timeout(Duration::from_secs(60));
        let answer = if method == "GET" || method == "DELETE" {
            request.call()
        } else {
            request.send_json(body)
        };
        let response = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(other(format!("webdriver {method} {path}: {code} {text}")));
            }
            Err(e) => return Err(other(format!("webdriver {method} {path}: {e}"))),
        };
        let value: Value = response.into_json()?;
        Ok(value["value"].clone())
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) -> io::Result<()> {
        self.call("POST", "/url", &json!({ "url": url })).map(drop)
    }

    fn element(&self, css: &str) -> io::Result<String> {
        let found = self.call("POST", "/element", &json!({"using": "css selector", "value": css}))?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| other(format!("no element {css}: {found}")))
    }

    /// Sets the file input `css` to `file`, as a person choosing it would.
    pub fn choose_file(&self, css: &str, file: &Path) -> io::Result<()> {
        let id = self.element(css)?;
        let text = file.display().to_string();
        self.call("POST", &format!("/element/{id}/value"), &json!({ "text": text }))
            .map(drop)
    }

    /// Clicks the element `css`.
    pub fn click(&self, css: &str) -> io::Result<()> {
        let id = self.element(css)?;
        self.call("POST", &format!("/element/{id}/click"), &json!({})).map(drop)
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn script(&self, script: &str) -> io::Result<Value> {
        self.call("POST", "/execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// Runs `script` until it returns something other than `null` or `false`, for at most
    /// `timeout`; returns that value.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> io::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(script)?;
            if !(value.is_null() || value == false) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(other(format!("timed out after {timeout:?} waiting for: {script}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", "", &Value::Null);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
