//! Test harness: the real `ringcast` binary on 127.0.0.1 port 0, real ffmpeg/ffprobe/rtmpdump,
//! and the project's RTMP client. Every process is killed when its handle drops.

#![allow(dead_code)]

pub mod browser;
pub mod fleet;
pub mod hooks;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use ringcast::client::{ClientOptions, Incoming, RtmpClient, RtmpUrl};
use ringcast::rtmp::chunk::RawMessage;

/// A running ringcast node.
pub struct Node {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    pub rtmp: String,
    /// RTMPS listener address (`rtmps=`), `None` without `rtmp.tls_listen`.
    pub rtmps: Option<String>,
    /// HTTP API address (`http=` in the startup line).
    pub http: String,
    /// Gossip address peers use (`gossip=`), `None` when the node runs standalone.
    pub gossip: Option<String>,
    /// HTTP-FLV address (`flv=`), `None` when `flv.listen` is off.
    pub flv: Option<String>,
}

impl Node {
    /// Starts `ringcast` with the embedded default config plus `env` overrides; RTMP on a free
    /// port of 127.0.0.1 (read back from the startup log line).
    pub async fn start(env: &[(&str, &str)]) -> Node {
        Node::start_in(None, env).await
    }

    /// [`Node::start`] inside the network namespace `netns` (`ip netns exec`, which execs
    /// the binary: the pid is ringcast's).
    pub async fn start_in(netns: Option<&str>, env: &[(&str, &str)]) -> Node {
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ringcast")]);
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_ringcast")),
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RINGCAST_RTMP__LISTEN", "127.0.0.1:0")
            .env("RINGCAST_HTTP__LISTEN", "127.0.0.1:0")
            .env("RINGCAST_LOG__LEVEL", "info,ringcast=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ringcast");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        let mut node = Node {
            child,
            log,
            rtmp: String::new(),
            rtmps: None,
            http: String::new(),
            gossip: None,
            flv: None,
        };
        let line = node
            .wait_log("ringcast listening", Duration::from_secs(20))
            .await;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        node.rtmp = field("rtmp=").expect("rtmp= in the listening line");
        node.http = field("http=").expect("http= in the listening line");
        node.rtmps = field("rtmps=").filter(|a| a != "off");
        node.gossip = field("gossip=").filter(|g| g != "off");
        node.flv = field("flv=").filter(|f| f != "off");
        node
    }

    /// `GET path` on the node's HTTP API: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path).await
    }

    /// `GET path`, body parsed as JSON (panics if it is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {status} body is not JSON ({e}): {body}"));
        (status, json)
    }

    /// `http://FLV/path.flv` on this node's HTTP-FLV listener (panics when it has none).
    pub fn flv_url(&self, path: &str) -> String {
        let flv = self
            .flv
            .as_deref()
            .expect("the node serves HTTP-FLV (flv.listen)");
        match path.split_once('?') {
            Some((stream, query)) => format!("http://{flv}/{stream}.flv?{query}"),
            None => format!("http://{flv}/{path}.flv"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.rtmp, path)
    }

    /// `rtmps://` URL of `path` on the node's RTMPS listener (panics without one).
    pub fn tls_url(&self, path: &str) -> String {
        let addr = self.rtmps.as_ref().expect("the node has no RTMPS listener");
        format!("rtmps://{addr}/{path}")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_lines().iter().any(|l| l.contains(needle))
    }

    /// A position in the log: lines logged from now on are after it (see
    /// [`Node::wait_log_since`]).
    pub fn log_mark(&self) -> usize {
        self.log.lock().expect("log lock").len()
    }

    /// Bytes the node has logged so far (newlines included).
    pub fn log_bytes(&self) -> usize {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .map(|l| l.len() + 1)
            .sum()
    }

    /// Waits for a log line containing `needle`, anywhere in the log; panics with the log
    /// after `limit`. To wait for a line caused by what the test just did, use
    /// [`Node::wait_log_since`] with a mark taken before.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> String {
        self.wait_log_all(&[needle], limit).await
    }

    /// Waits for a log line containing every one of `needles`.
    pub async fn wait_log_all(&self, needles: &[&str], limit: Duration) -> String {
        self.wait_log_all_since(0, needles, limit).await
    }

    /// Waits for a line logged after `mark` (see [`Node::log_mark`]) containing `needle`.
    pub async fn wait_log_since(&self, mark: usize, needle: &str, limit: Duration) -> String {
        self.wait_log_all_since(mark, &[needle], limit).await
    }

    /// Waits for a line logged after `mark` containing every one of `needles`.
    pub async fn wait_log_all_since(
        &self,
        mark: usize,
        needles: &[&str],
        limit: Duration,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self
                .log_lines()
                .into_iter()
                .skip(mark)
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with {needles:?} within {limit:?}; log:\n{}",
                    self.log_lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends a signal to the node process.
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()?
            .ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- ringcast log ----\n{}", self.log_lines().join("\n"));
        }
    }
}

/// A minimal HTTP/1.1 GET over a fresh TCP connection (`Connection: close`): (status, body).
/// Status 0 and the error as body if the request fails (connection refused after exit, ...).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_full(addr, path).await;
    (status, body)
}

/// Like [`http_get`], also returning the response headers (names lower-cased).
pub async fn http_get_full(addr: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    http_request(addr, "GET", path, &[]).await
}

/// `method path` with extra request headers (e.g. `("Authorization", "Bearer ...")`), over a
/// fresh connection: (status, headers with lower-cased names, body).
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => return (0, Vec::new(), e.to_string()),
        Err(_) => return (0, Vec::new(), "timed out".into()),
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, Vec::new(), format!("no header end in {text:?}"));
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, headers, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// ffmpeg publishing a generated H.264/AAC stream in real time for `seconds` (it stops by
/// itself), keyframe every `gop` frames at 25 fps.
pub fn ffmpeg_publish(url: &str, seconds: u32, gop: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g",
            &gop.to_string(),
            "-keyint_min",
            &gop.to_string(),
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string(), "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg (apt-get install ffmpeg)")
}

/// Runs a command to completion within `limit`; returns (success, stdout, stderr).
pub async fn run(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => (false, String::new(), e.to_string()),
        Err(_) => (false, String::new(), format!("timed out after {limit:?}")),
    }
}

/// Number of video frames ffmpeg decodes from `url` (stops after `frames` or `limit`).
pub async fn ffmpeg_decode_frames(url: &str, frames: u32, limit: Duration) -> (u32, String) {
    let (_, out, err) = run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i", url])
            .args([
                "-map",
                "0:v:0",
                "-frames:v",
                &frames.to_string(),
                "-f",
                "framemd5",
                "-",
            ]),
        limit,
    )
    .await;
    let decoded = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count() as u32;
    (decoded, err)
}

/// rtmpdump (librtmp) records `seconds` of the live stream at `url`; returns how many video
/// frames ffprobe decodes from the recording, and what rtmpdump said.
pub async fn rtmpdump_decodable_frames(url: &str, seconds: u32) -> (u32, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let flv = std::env::temp_dir().join(format!("ringcast-dump-{}-{n}.flv", std::process::id()));
    let flv = flv.to_string_lossy().to_string();
    let stop = seconds.to_string();
    let (_, _, dump_err) = run(
        Command::new("rtmpdump").args(["-r", url, "--live", "--stop", &stop, "-o", &flv]),
        Duration::from_secs(20),
    )
    .await;
    let (_, out, _) = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            &flv,
        ]),
        Duration::from_secs(20),
    )
    .await;
    let _ = std::fs::remove_file(&flv);
    (out.trim().parse().unwrap_or(0), dump_err)
}

pub async fn client(url: &str) -> RtmpClient {
    let url = RtmpUrl::parse(url).expect("url");
    RtmpClient::connect(&url, ClientOptions::default())
        .await
        .expect("connect")
}

/// Plays `url` with the project's client.
pub async fn player(url: &str) -> RtmpClient {
    let mut c = client(url).await;
    c.play().await.expect("play");
    c
}

/// The next media message, skipping status and control events.
pub async fn next_media(c: &mut RtmpClient, limit: Duration) -> Option<RawMessage> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, c.next()).await {
            Ok(Ok(Incoming::Media(m))) => return Some(m),
            Ok(Ok(_)) => continue,
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

/// Waits for a status with `code`; returns false on timeout or close.
pub async fn wait_status(c: &mut RtmpClient, code: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, c.next()).await {
            Ok(Ok(Incoming::Status(s))) if s.code == code => return true,
            Ok(Ok(_)) => continue,
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// Counts video messages received within `window`.
pub async fn count_video(c: &mut RtmpClient, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut n = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, c.next()).await {
        if let Incoming::Media(m) = ev {
            if m.type_id == 9 {
                n += 1;
            }
        }
    }
    n
}

/// Reads until `want` video messages arrived or `limit` passed; returns how many did. For
/// "frames keep coming" checks that must not depend on how fast a loaded machine encodes.
pub async fn wait_video(c: &mut RtmpClient, want: usize, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    let mut n = 0;
    while n < want {
        match tokio::time::timeout_at(deadline, c.next()).await {
            Ok(Ok(Incoming::Media(m))) if m.type_id == 9 => n += 1,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    n
}

/// Counts video messages of every client at once, each on its own task, within `window`;
/// gives the clients back, still connected.
pub async fn count_video_all(
    clients: Vec<RtmpClient>,
    window: Duration,
) -> (Vec<RtmpClient>, Vec<usize>) {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let n = count_video(&mut c, window).await;
                (c, n)
            })
        })
        .collect();
    let (mut back, mut counts) = (Vec::new(), Vec::new());
    for t in tasks {
        let (c, n) = t.await.expect("counting task");
        back.push(c);
        counts.push(n);
    }
    (back, counts)
}

pub fn is_video_keyframe(m: &RawMessage) -> bool {
    m.type_id == 9 && ringcast::media::tag::inspect_video(&m.payload).keyframe
}

pub fn is_video_sequence_header(m: &RawMessage) -> bool {
    m.type_id == 9 && ringcast::media::tag::inspect_video(&m.payload).sequence_header
}

/// A publisher of synthetic H.264-tagged video (payloads are not decodable pictures, but their
/// FLV tags are real: sequence header, keyframes every `gop` frames, inter frames), paced in
/// real time at `fps` for `frames` frames. Returns the task; it ends by itself.
pub fn synthetic_publisher(
    url: &str,
    fps: u32,
    frame_bytes: usize,
    gop: u32,
    frames: u32,
) -> tokio::task::JoinHandle<Result<u32, ringcast::client::ClientError>> {
    let url = url.to_string();
    tokio::spawn(async move {
        let mut c = client(&url).await;
        c.publish().await?;
        c.send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
            .await?;
        let interval = Duration::from_secs(1) / fps;
        let start = tokio::time::Instant::now();
        let mut body = vec![0u8; frame_bytes.max(6)];
        for i in 0..frames {
            let key = i % gop == 0;
            body[0] = if key { 0x17 } else { 0x27 };
            body[1] = 1;
            body[5] = (i % 251) as u8;
            let ts = i * 1000 / fps;
            c.send_media(9, ts, &body).await?;
            tokio::time::sleep_until(start + interval * (i + 1)).await;
        }
        Ok(frames)
    })
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Established TCP connections of process `pid` to any of `ports` (read with `ss`): a node's
/// upstream connections to other nodes' RTMP listeners.
pub fn connections_to(pid: u32, ports: &[u16]) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .expect("ss (iproute2)");
    let owner = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&owner))
        .filter(|l| {
            // Recv-Q Send-Q Local Peer Process
            l.split_whitespace()
                .nth(3)
                .and_then(|peer| peer.rsplit(':').next())
                .and_then(|port| port.parse::<u16>().ok())
                .is_some_and(|port| ports.contains(&port))
        })
        .count()
}

/// The port of a `host:port` address.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("host:port")
}

/// A TCP connection that has completed the RTMP handshake and nothing else.
pub async fn raw_after_handshake(addr: &str) -> tokio::net::TcpStream {
    use ringcast::rtmp::handshake::{Handshake, Step};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut hs, c0c1) = Handshake::client().expect("handshake");
    s.write_all(&c0c1).await.expect("c0c1");
    let mut buf = vec![0u8; 8192];
    loop {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed in handshake");
        match hs.process(&buf[..n]).expect("handshake") {
            Step::Continue { reply } => s.write_all(&reply).await.expect("write"),
            Step::Done { reply, .. } => {
                s.write_all(&reply).await.expect("c2");
                return s;
            }
        }
    }
}

/// Whether the server closes `s` within `limit` (reads until EOF or error).
pub async fn closed_by_server(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}
