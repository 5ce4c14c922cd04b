//! `kismatic report RUN_DIR`: the timeline page of a run (killed once and resumed) is written from its folder,
//! holds no script and no reference outside itself, escapes node text, and renders in a real browser: headless
//! Chromium turns it into a PNG of the expected size in which the chart's colours appear, with no console message.

use kismatic_journal::store::RunsDir;
use kismatic_journal::{Event, FORMAT, Header, Record, RunIdentity};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T0: u64 = 1_795_636_800_000;
const RUN: &str = "20261125T200000Z";

/// One foreground step: (node, phase, step, start offset s, length s, waits as (kind, offset s, length s)).
type Step = (&'static str, &'static str, &'static str, f64, f64, &'static [(&'static str, f64, f64)]);

const FIRST: &[Step] = &[
    ("etcd01", "etcd", "etcd/snapshot/etcd", 2.0, 1.5, &[("health", 2.0, 0.3), ("snapshot", 2.3, 1.1)]),
    (
        "etcd01",
        "etcd",
        "etcd/etcd01/upgrade/etcd",
        3.6,
        6.0,
        &[("health", 3.6, 0.4), ("restart", 5.0, 1.0), ("health", 6.0, 3.2)],
    ),
    ("etcd01", "etcd", "etcd/etcd01/markers", 9.7, 0.2, &[]),
    ("master01", "master", "master/master01/cordon", 10.0, 0.1, &[]),
    ("master01", "master", "master/master01/drain", 10.1, 4.0, &[("drain", 10.1, 3.9)]),
    (
        "master01",
        "master",
        "master/master01/upgrade/kube-apiserver",
        14.2,
        8.0,
        &[("restart", 15.0, 1.2), ("health", 16.2, 5.8)],
    ),
    ("master01", "master", "master/master01/markers", 22.3, 0.2, &[]),
    ("master01", "master", "master/master01/uncordon", 22.5, 5.0, &[("rollout", 22.7, 4.8)]),
    ("worker01", "worker", "worker/worker01/cordon", 28.0, 0.1, &[]),
    ("worker01", "worker", "worker/worker01/drain", 28.1, 6.0, &[("drain", 28.1, 5.9)]),
];

const SECOND: &[Step] = &[
    (
        "worker01",
        "worker",
        "worker/worker01/upgrade/kubelet",
        60.0,
        9.0,
        &[("restart", 61.0, 1.0), ("health", 62.0, 6.8)],
    ),
    ("worker01", "worker", "worker/worker01/markers", 69.1, 0.2, &[]),
    ("worker01", "worker", "worker/worker01/uncordon", 69.4, 6.0, &[("rollout", 69.5, 5.9)]),
    ("worker02", "worker", "worker/worker02/cordon", 75.5, 0.1, &[]),
    ("worker02", "worker", "worker/worker02/drain", 75.6, 5.0, &[("drain", 75.6, 5.0)]),
    (
        "worker02",
        "worker",
        "worker/worker02/upgrade/kubelet",
        80.7,
        9.0,
        &[("restart", 81.0, 1.0), ("health", 82.0, 7.5)],
    ),
    ("worker02", "worker", "worker/worker02/markers", 89.8, 0.2, &[]),
    ("worker02", "worker", "worker/worker02/uncordon", 90.0, 5.0, &[("rollout", 90.1, 4.9)]),
    ("-", "services", "services/dns", 95.2, 6.0, &[("rollout", 95.5, 5.6)]),
];

fn ms(s: f64) -> u64 {
    T0 + (s * 1000.0) as u64
}

fn event(node: &str, phase: &str, step: &str, state: &str, at: f64, extra: serde_json::Value) -> String {
    let mut e = json!({"at_ms": ms(at), "run_id": RUN, "phase": phase, "step": step, "state": state});
    if node != "-" {
        e["node"] = json!(node);
    }
    if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        o.extend(x.clone());
    }
    e.to_string()
}

/// A run folder as kismatic leaves it: killed with SIGKILL in worker01's kubelet step, then resumed to the end.
fn run_folder(root: &Path) -> PathBuf {
    let steps: Vec<String> = ["etcd01", "master01", "worker01", "worker02"]
        .iter()
        .map(|n| format!("stage/{n}"))
        .chain(FIRST.iter().chain(SECOND).map(|s| s.2.to_string()))
        .collect();
    let header = Header {
        format: FORMAT,
        run_id: RUN.into(),
        started_at_ms: T0,
        identity: RunIdentity {
            mode: "online".into(),
            release_version: "1.1.0".into(),
            release_digest: "abc".into(),
            partial_ok: false,
        },
        steps,
    };
    let runs = RunsDir::new(root.join("runs"));
    let mut j = runs.create_run(&header).expect("run");
    let dir = j.dir().to_path_buf();
    let mut log = String::new();
    let mut rec = |at: u64, event: Event| j.append(&Record { at_ms: at, event }).expect("append");
    let attach = |pid: u32| Event::Attached {
        pid,
        host: "admin1".into(),
        command: ["kismatic", "upgrade", "online", "-f", "ha.yaml"].map(String::from).to_vec(),
        cwd: "/srv/prod".into(),
        version: "0.1.0".into(),
    };
    let steps_of = |part: &[Step], log: &mut String, rec: &mut dyn FnMut(u64, Event)| {
        for (node, phase, step, at, len, waits) in part {
            rec(ms(*at), Event::Started { step: step.to_string() });
            log.push_str(&event(node, phase, step, "started", *at, json!({})));
            log.push('\n');
            let waits: Vec<serde_json::Value> =
                waits.iter().map(|(k, a, l)| json!({"kind": k, "at_ms": ms(*a), "ms": (l * 1000.0) as u64})).collect();
            let wait_ms: u64 = waits.iter().filter_map(|w| w["ms"].as_u64()).sum();
            rec(ms(at + len), Event::Finished { step: step.to_string() });
            let extra = json!({"duration_ms": (len * 1000.0) as u64, "wait_ms": wait_ms, "remote_ms": 100, "waits": waits, "message": "done"});
            log.push_str(&event(node, phase, step, "finished", at + len, extra));
            log.push('\n');
        }
    };
    rec(T0, attach(4242));
    for (i, n) in ["etcd01", "master01", "worker01", "worker02"].iter().enumerate() {
        let (a, l) = (0.1 + i as f64 * 0.5, 3.0);
        rec(ms(a), Event::Started { step: format!("stage/{n}") });
        rec(ms(a + l), Event::Finished { step: format!("stage/{n}") });
        log.push_str(&event(
            n,
            "stage",
            &format!("stage/{n}"),
            "finished",
            a + l,
            json!({"duration_ms": 3000, "wait_ms": 0, "remote_ms": 2800}),
        ));
        log.push('\n');
    }
    steps_of(FIRST, &mut log, &mut rec);
    rec(ms(34.2), Event::Started { step: "worker/worker01/upgrade/kubelet".into() });
    log.push_str(&event("worker01", "worker", "worker/worker01/upgrade/kubelet", "started", 34.2, json!({})));
    log.push_str("\n[  36.0s] a progress line\n{\"torn");
    log.push('\n');
    // Killed here; resumed at 58 s.
    rec(ms(58.0), attach(5151));
    steps_of(SECOND, &mut log, &mut rec);
    rec(
        ms(101.5),
        Event::Ended { completed: true, message: "The cluster was upgraded successfully to release 1.1.0.".into() },
    );
    std::fs::write(dir.join("run.log"), log).expect("run.log");
    let plan = json!({
        "format": 1, "mode": "online", "release": "1.1.0", "kubernetes": "v1.34.1", "status": {"state": "ready"},
        "partial": false, "phases": [], "skipped": [], "pruned": [],
        "findings": [{"node": "ingress01", "code": "ingress-node", "class": "unavailable",
                      "message": "ingress node <script>alert('x')</script> & more", "object": "Node ingress01"}]
    });
    std::fs::write(dir.join("upgrade-plan.json"), plan.to_string()).expect("plan");
    let nodes: Vec<serde_json::Value> = ["etcd01", "master01", "worker01", "worker02"]
        .iter()
        .map(|n| json!({"host": n, "from": "1.0.0", "to": "1.1.0", "seconds": 10.0, "outcome": "upgraded"}))
        .collect();
    let result = json!({"completed": true, "resumed": true, "release": "1.1.0", "nodes": nodes, "left_out": [], "message": "ok"});
    std::fs::write(dir.join("result.json"), result.to_string()).expect("result");
    dir
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("KISMATIC_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    path.exists().then_some(path)
}

/// Renders a page with headless Chromium (flags that work on these machines; name resolution off, so nothing
/// leaves the machine). Returns Chromium's stderr.
fn screenshot(page: &Path, png: &Path, width: u32, height: u32) -> String {
    let browser = chromium().expect("chromium");
    let profile = tempfile::tempdir().expect("profile");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn timeline_page_renders_in_chromium() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = run_folder(tmp.path());
    let out = Command::new(env!("CARGO_BIN_EXE_kismatic")).arg("report").arg(&dir).output().expect("kismatic runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = dir.join("timeline.html");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), page.display().to_string());
    let html = std::fs::read_to_string(&page).expect("page");

    // Self-contained: no script, nothing fetched.
    for forbidden in ["<script", "src=", "href=", "http:", "https:", "@import"] {
        assert!(!html.contains(forbidden), "the page contains {forbidden:?}");
    }
    assert!(html.matches("url(").count() == html.matches("url(#").count(), "only in-page references");
    assert!(
        html.contains("ingress node &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"),
        "node text escaped"
    );
    // Content: a lane per node and the services, the resume marker, the summary and the findings.
    for lane in ["etcd01", "master01", "worker01", "worker02", "services"] {
        assert!(html.contains(&format!("class=\"lane\">{lane}</text>")), "lane {lane}");
    }
    assert!(html.contains("resumed by pid 5151 on admin1"), "resume marker");
    assert!(html.contains("started; no end recorded"), "the killed step is drawn as interrupted");
    assert!(html.contains("worker/worker01/drain: waiting on drain for 5.9s"), "waits are split out");
    assert!(html.contains("finished: The cluster was upgraded successfully"), "state");
    assert!(html.contains("<td>1.0.0 → 1.1.0</td>"), "release from → to from result.json");

    let Some(_) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must have chromium (scripts/setup.sh installs it)");
        eprintln!(
            "SKIPPED the browser check: no /usr/bin/chromium (apt-get install chromium, or run scripts/setup.sh)"
        );
        return;
    };
    let keep = std::env::temp_dir().join("kismatic-report-test");
    std::fs::create_dir_all(&keep).expect("keep dir");
    let png_path = keep.join("timeline.png");
    let _ = std::fs::remove_file(&png_path);
    let (width, height) = (1400, 900);
    let log = screenshot(&page, &png_path, width, height);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).expect("png")));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!((info.width, info.height), (width, height));
    let channels = info.color_type.samples();
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| **p == rgb).count();
    let white = count([255, 255, 255]);
    eprintln!(
        "timeline PNG: {} ({}x{}), {:.1}% non-white",
        png_path.display(),
        info.width,
        info.height,
        100.0 * (pixels.len() - white) as f64 / pixels.len() as f64
    );
    assert!(white < pixels.len() * 95 / 100, "the page is not blank");
    // The chart's colours: work, and waits on restarts, health, drains and rollouts.
    for (name, rgb) in [
        ("work", [0x4e, 0x79, 0xa7]),
        ("restart", [0xf2, 0x8e, 0x2b]),
        ("health", [0x59, 0xa1, 0x4f]),
        ("drain", [0xb0, 0x7a, 0xa1]),
        ("rollout", [0xed, 0xc9, 0x48]),
    ] {
        assert!(count(rgb) > 50, "{name} bars are drawn ({} pixels)", count(rgb));
    }
}
