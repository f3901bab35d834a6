//! Headless Chromium for the browser tests (Debian's `chromium`; `scripts/test.sh` installs
//! it): a bounded run to completion (`--dump-dom`, `--screenshot`), or a browser left running
//! on a page. Each runs in its own process group with a fresh profile, and the whole group is
//! killed, the profile removed, when it ends or its handle drops.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// One browser run.
pub const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// The flags every run gets: headless, and no connection anywhere but where the page goes.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
];

/// The Chromium binary: `chromium` on PATH (Debian: /usr/bin/chromium).
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .expect("chromium not found: apt-get install chromium (scripts/test.sh does)")
}

/// Kills a browser's whole process group (browser, zygote, renderers) unless it exited.
pub struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
        }
    }
}

/// A fresh profile directory, removed on drop.
pub struct Profile(PathBuf);

impl Profile {
    pub fn new() -> Profile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ringcast-chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("profile dir");
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs headless Chromium on `url` with `extra` flags: (stdout, stderr), or why it failed.
pub async fn browser(url: &str, extra: &[String]) -> Result<(String, String), String> {
    let profile = Profile::new();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args(FLAGS)
        .arg("--virtual-time-budget=8000")
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(extra)
        .arg(url)
        // Crash reports and caches go to the profile too, not to the user's home.
        .env("XDG_CONFIG_HOME", &profile.0)
        .env("XDG_CACHE_HOME", &profile.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("spawn chromium: {e}"))?;
    let group = Group(child.id().map(|id| id as i32));
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let read_out = tokio::spawn(async move {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    let read_err = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    let status = tokio::time::timeout(BROWSER_LIMIT, child.wait()).await;
    // On a timeout the group is killed here, which also ends the readers.
    drop(group);
    let (stdout, stderr) = (
        read_out.await.unwrap_or_default(),
        read_err.await.unwrap_or_default(),
    );
    match status {
        Ok(Ok(s)) if s.success() => Ok((stdout, stderr)),
        Ok(Ok(s)) => Err(format!("chromium exited {s}: {stderr}")),
        Ok(Err(e)) => Err(format!("waiting for chromium: {e}")),
        Err(_) => Err(format!("chromium ran over {BROWSER_LIMIT:?}: {stderr}")),
    }
}

/// A headless Chromium left running on a page (for pages that report on their own, such as
/// a video player); killed with its whole process group on drop.
pub struct Running {
    _child: tokio::process::Child,
    _group: Group,
    _profile: Profile,
}

/// Starts headless Chromium on `url` with `extra` flags and leaves it running.
pub fn spawn(url: &str, extra: &[&str]) -> Result<Running, String> {
    let profile = Profile::new();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(extra)
        .arg(url)
        .env("XDG_CONFIG_HOME", &profile.0)
        .env("XDG_CACHE_HOME", &profile.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("spawn chromium: {e}"))?;
    let group = Group(child.id().map(|id| id as i32));
    Ok(Running {
        _child: child,
        _group: group,
        _profile: profile,
    })
}
