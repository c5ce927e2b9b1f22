//! Logging (issue 5): child output framing, the per-process pipeline,
//! files with rotation and reopen, stream modes and both formats, through
//! the real binary with real children.

mod common;

use std::fs;
use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

const TERM: i32 = 15;
const USR1: i32 = 10;

fn config(global: &str, processes: &str) -> String {
    format!(
        "version: \"1.0\"\nglobal:\n  shutdown_timeout: 10s\n  restart_backoff_initial: 50ms\n  api_enabled: false\n  metrics_enabled: false\n{global}processes:\n{processes}"
    )
}

/// Child lines of `instance` in text format: the message after ` | `.
fn messages(log: &str, instance: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let (head, msg) = l.split_once(" | ")?;
            (head.split_whitespace().nth(2) == Some(instance)).then(|| msg.to_string())
        })
        .collect()
}

/// JSON records of the log (other lines ignored).
fn records(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Messages of the JSON child records of `instance`.
fn json_messages(log: &str, instance: &str) -> Vec<String> {
    of(&records(log), instance)
        .iter()
        .filter_map(|r| r["msg"].as_str().map(String::from))
        .collect()
}

fn of<'a>(recs: &'a [serde_json::Value], instance: &str) -> Vec<&'a serde_json::Value> {
    recs.iter()
        .filter(|r| r["instance"] == instance && r["process"] != "sheepdog")
        .collect()
}

fn readlink(pid: i32, fd: u32) -> String {
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

#[test]
fn lines_from_many_children_interleave_whole() {
    // 4 instances each print 3000 lines of 300 bytes as fast as they can,
    // in 8 KiB buffered writes that cut lines anywhere.
    let cfg = config(
        "",
        r#"  chatty:
    type: oneshot
    scale: 1
    command: ["python3", "-c", "import os\nn=os.environ['SHEEPDOG_INSTANCE']\nfor i in range(3000): print(n + ' %05d ' % i + 'x' * 280)"]
  chatty2:
    type: oneshot
    command: ["python3", "-c", "import os\nn=os.environ['SHEEPDOG_INSTANCE']\nfor i in range(3000): print(n + ' %05d ' % i + 'y' * 280)"]
  chatty3:
    type: oneshot
    command: ["python3", "-c", "import os\nn=os.environ['SHEEPDOG_INSTANCE']\nfor i in range(3000): print(n + ' %05d ' % i + 'z' * 280)"]
  chatty4:
    type: oneshot
    command: ["python3", "-c", "import os\nn=os.environ['SHEEPDOG_INSTANCE']\nfor i in range(3000): print(n + ' %05d ' % i + 'w' * 280)"]
"#,
    );
    let mut sd = Sheepdog::start("interleave", &cfg);
    assert_eq!(sd.exit_code(WAIT * 3), 0, "{}", sd.log());
    let log = sd.log();
    for (inst, fill) in [
        ("chatty-1", 'x'),
        ("chatty2-1", 'y'),
        ("chatty3-1", 'z'),
        ("chatty4-1", 'w'),
    ] {
        let msgs = messages(&log, inst);
        assert_eq!(msgs.len(), 3000, "{inst}");
        for (i, m) in msgs.iter().enumerate() {
            let want = format!("{inst} {i:05} {}", fill.to_string().repeat(280));
            assert_eq!(m, &want, "{inst} line {i} is not whole or out of order");
        }
    }
}

/// Read sheepdog's stdout as it comes: count flood lines, note when each
/// ticker line arrives.
struct Reader {
    flood_lines: AtomicU64,
    /// (arrival ns, printed ns) of ticker lines.
    ticks: Mutex<Vec<(u128, u128)>>,
    other: Mutex<Vec<String>>,
    done: AtomicBool,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn vm_rss_kib(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_flooding_child_cannot_starve_another_and_memory_stays_bounded() {
    // 1 GiB by default; SHEEPDOG_FLOOD_BYTES overrides (e.g. on a slow box).
    let total: u64 = std::env::var("SHEEPDOG_FLOOD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    const LINE: u64 = 128;
    let expected = total / LINE;
    let payload = "x".repeat(LINE as usize - 1);
    let cfg = config(
        "",
        &format!(
            r#"  flood:
    type: oneshot
    command: "yes {payload} | head -c {}"
  ticker:
    command: "i=0; while :; do i=$((i+1)); echo tick $i $(date +%s%N); sleep 0.1; done"
"#,
            expected * LINE
        ),
    );
    let mut sd = Sheepdog::start_with("flood", &cfg, |c| {
        c.stdout(Stdio::piped());
    });
    let pid = sd.pid();
    let out = sd.child.stdout.take().unwrap();
    let reader = Arc::new(Reader {
        flood_lines: AtomicU64::new(0),
        ticks: Mutex::new(Vec::new()),
        other: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
    });
    let r = reader.clone();
    let tail = payload.as_bytes()[..16].to_vec();
    let read_thread = std::thread::spawn(move || {
        let mut out = std::io::BufReader::with_capacity(1 << 20, out);
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            match out.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.len() > 20 && line[line.len() - 17..line.len() - 1] == tail[..] {
                r.flood_lines.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(rest) = text.split(" | tick ").nth(1) {
                if let Some(ns) = rest.split_whitespace().nth(1).and_then(|n| n.parse().ok()) {
                    r.ticks.lock().unwrap().push((now_ns(), ns));
                }
            } else {
                r.other.lock().unwrap().push(text);
            }
        }
        r.done.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let mut max_rss = 0;
    let mut flood_started_ns = None;
    let all_read = wait_until(Duration::from_secs(300), || {
        if let Some(kib) = vm_rss_kib(pid) {
            max_rss = max_rss.max(kib);
        }
        let n = reader.flood_lines.load(Ordering::Relaxed);
        if n > 0 && flood_started_ns.is_none() {
            flood_started_ns = Some(now_ns());
        }
        n >= expected || reader.done.load(Ordering::Relaxed)
    });
    let flood_ended_ns = now_ns();
    let took = started.elapsed();
    sd.signal(TERM);
    let code = sd.exit_code(WAIT);
    read_thread.join().unwrap();
    let other = reader.other.lock().unwrap().join("");
    assert!(
        all_read,
        "flood not read within 300 s: {} of {expected} lines",
        reader.flood_lines.load(Ordering::Relaxed)
    );
    assert_eq!(code, 0, "{other}");
    assert_eq!(
        reader.flood_lines.load(Ordering::Relaxed),
        expected,
        "every flood line arrives, once"
    );
    let ticks = reader.ticks.lock().unwrap().clone();
    let during: Vec<&(u128, u128)> = ticks
        .iter()
        .filter(|(arrived, _)| {
            flood_started_ns.is_some_and(|s| *arrived >= s) && *arrived <= flood_ended_ns
        })
        .collect();
    let worst_ms = during
        .iter()
        .map(|(arrived, printed)| arrived.saturating_sub(*printed) / 1_000_000)
        .max()
        .unwrap_or(0);
    eprintln!(
        "flood: {} MiB in {:.1} s ({:.0} MiB/s); {} ticker lines during the flood, worst latency {worst_ms} ms; sheepdog max VmRSS {max_rss} KiB",
        total >> 20,
        took.as_secs_f64(),
        (total >> 20) as f64 / took.as_secs_f64(),
        during.len()
    );
    if took > Duration::from_secs(2) {
        assert!(
            during.len() as u64 >= took.as_secs() / 2,
            "the ticker was starved: {} lines in {took:?}",
            during.len()
        );
    }
    assert!(
        worst_ms < 5_000,
        "a ticker line took {worst_ms} ms to come out"
    );
    assert!(max_rss < 64 * 1024, "sheepdog RSS reached {max_rss} KiB");
}

#[test]
fn the_partial_last_line_and_a_pending_multiline_entry_are_flushed_when_stopped() {
    let cfg = config(
        "",
        r#"  partial:
    command: "printf 'no newline before the stop'; touch $DIR/partial.printed; exec sleep 60"
  trace:
    command: "printf 'ERROR first\n  at a\n  at b\n'; touch $DIR/trace.printed; exec sleep 60"
    logging:
      multiline: {pattern: '^ERROR', timeout: 60s}
"#,
    );
    let mut sd = Sheepdog::start("partial", &cfg);
    // Both have printed (and sit in sleep): nothing of it is shown yet, as
    // the line has no newline and the entry is still open.
    assert!(
        wait_until(WAIT, || sd.dir.path("partial.printed").exists()
            && sd.dir.path("trace.printed").exists()),
        "{}",
        sd.log()
    );
    assert!(messages(&sd.log(), "partial-1").is_empty());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert_eq!(messages(&log, "partial-1"), ["no newline before the stop"]);
    let want = format!("{:<9} | ERROR first\n  at a\n  at b\n", "trace-1");
    assert!(log.contains(&want), "{log}");
}

#[test]
fn invalid_utf8_is_replaced_never_a_panic() {
    for format in ["text", "json"] {
        let cfg = config(
            &format!("  log_format: {format}\n"),
            r#"  bytes:
    type: oneshot
    command: |
      printf 'bad \377\376 bytes\n'; printf '\300\n'
"#,
        );
        let mut sd = Sheepdog::start("utf8", &cfg);
        assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
        let log = sd.log();
        let msgs = if format == "text" {
            messages(&log, "bytes-1")
        } else {
            json_messages(&log, "bytes-1")
        };
        assert_eq!(msgs, ["bad \u{FFFD}\u{FFFD} bytes", "\u{FFFD}"], "{log}");
    }
}

#[test]
fn a_crlf_line_end_is_not_kept_in_the_message() {
    // A Windows-made script: every line ends in CRLF; a progress bar's
    // bare \r is text and stays. `$` in a filter matches the line's end.
    let cfg = config(
        "  log_format: json\n",
        r#"  crlf:
    type: oneshot
    command: |
      printf 'first\r\nsecond done\r\n10%%\r100%%\n'
    logging:
      filters:
        exclude: ['second done$']
"#,
    );
    let mut sd = Sheepdog::start("crlf", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert_eq!(
        json_messages(&log, "crlf-1"),
        ["first", "10%\r100%"],
        "{log}"
    );
}

#[test]
fn a_closed_stdout_is_said_once_on_stderr_and_supervision_goes_on() {
    // The log collector went away: sheepdog's stdout is a pipe nobody
    // reads. Lines are dropped, stderr (the log file here) says so once,
    // and the job still runs to its end and its exit code still counts.
    let cfg = config(
        "",
        r#"  talk:
    type: oneshot
    command: |
      i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done; exit 3
"#,
    );
    let mut sd = Sheepdog::start_with("closed-stdout", &cfg, |cmd| {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        cmd.stdout(writer);
    });
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    assert_eq!(sd.count("unable to write to stdout"), 1, "{log}");
    assert!(log.contains("Broken pipe"), "{log}");
    assert!(!log.contains("line 1"), "child lines went to stderr: {log}");
}

/// Context switches of every thread of `pid` so far.
fn switches(pid: i32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

#[test]
fn a_stdout_file_at_its_size_limit_does_not_make_sheepdog_spin() {
    // sheepdog's stdout is a file at RLIMIT_FSIZE (`ulimit -f`): each write
    // past it fails and raises SIGXFSZ. Logging that signal was one more
    // write past it: a loop at full CPU for as long as sheepdog ran.
    let cfg = config(
        "",
        "  talk:\n    command: \"i=0; while [ $i -lt 300 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done; exec sleep 1000\"\n",
    );
    let wrapper = ["sh", "-c", "ulimit -f 8 && exec \"$@\"", "sh"];
    let mut sd = Sheepdog::start_under("fsize", &cfg, &wrapper, |_| {});
    let log = sd.dir.path("sheepdog.log");
    // The file reaches its limit (8 blocks of 512 or 1,024 bytes)…
    assert!(
        wait_until(WAIT, || fs::metadata(&log).is_ok_and(|m| m.len() >= 4096)),
        "{}",
        sd.log()
    );
    // …and then sheepdog, which has no timer to wake it, goes quiet: a
    // spin makes thousands of switches in this window.
    let pid = sd.pid();
    let quiet = wait_until(WAIT, || {
        let before = switches(pid);
        std::thread::sleep(Duration::from_millis(300));
        switches(pid) - before < 20
    });
    assert!(quiet, "sheepdog kept busy: {} switches", switches(pid));
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn very_long_lines_are_cut_and_marked_as_continued() {
    let cfg = config(
        "  log_format: json\n",
        r#"  long:
    type: oneshot
    command: ["python3", "-c", "print('a' * 2500 + 'END'); print('short')"]
    logging: {max_line_bytes: 1KiB}
"#,
    );
    let mut sd = Sheepdog::start("long", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let recs = records(&sd.log());
    let long = of(&recs, "long-1");
    let shape: Vec<(usize, bool)> = long
        .iter()
        .map(|r| (r["msg"].as_str().unwrap().len(), r["continued"] == true))
        .collect();
    assert_eq!(
        shape,
        [(1024, true), (1024, true), (455, false), (5, false)],
        "{:?}",
        long
    );
    let joined: String = long[..3]
        .iter()
        .map(|r| r["msg"].as_str().unwrap())
        .collect();
    assert_eq!(joined, "a".repeat(2500) + "END");
}

#[test]
fn multiline_stack_traces_are_merged_and_flushed_on_time_with_no_further_line() {
    let cfg = config(
        "  log_format: json\n",
        r#"  laravel:
    command: "printf '[2026-01-01 10:00:00] local.ERROR: boom\n#0 /app/a.php(10): f()\n#1 {main}\n[2026-01-01 10:00:01] local.INFO: next\n  continued\n'; exec sleep 60"
    logging:
      multiline: {pattern: '^\[\d{4}-', timeout: 300ms}
"#,
    );
    let mut sd = Sheepdog::start("multiline", &cfg);
    // The second entry can only come out through its timeout: the child
    // prints nothing more and stays alive.
    sd.wait_log(r#""msg":"[2026-01-01 10:00:01] local.INFO: next\n  continued""#);
    let msgs = json_messages(&sd.log(), "laravel-1");
    assert_eq!(
        msgs,
        [
            "[2026-01-01 10:00:00] local.ERROR: boom\n#0 /app/a.php(10): f()\n#1 {main}",
            "[2026-01-01 10:00:01] local.INFO: next\n  continued"
        ]
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn redaction_hides_a_token_on_stdout_and_in_the_file() {
    let cfg = config(
        "",
        r#"  api:
    type: oneshot
    command: "echo 'login user=ann token=s3cr3tT0k3n ok'; echo 'Authorization: Bearer abc.def.ghi' >&2"
    logging:
      file: {path: "$DIR/api.log"}
      redaction:
        patterns:
          - {name: token, pattern: 'token=\w+', replacement: 'token=[REDACTED]'}
          - {name: bearer, pattern: 'Bearer [\w.]+'}
"#,
    );
    let mut sd = Sheepdog::start("redact", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    let file = fs::read_to_string(sd.dir.path("api.log")).unwrap();
    for (what, text) in [("stdout", &log), ("file", &file)] {
        assert!(
            !text.contains("s3cr3t") && !text.contains("abc.def"),
            "{what}:\n{text}"
        );
        // stdout and stderr are two pipes: their order is not fixed.
        let mut msgs = messages(text, "api-1");
        msgs.sort();
        assert_eq!(
            msgs,
            ["Authorization: ***", "login user=ann token=[REDACTED] ok"],
            "{what}:\n{text}"
        );
    }
}

#[test]
fn redaction_covers_the_message_and_fields_a_json_line_decodes_to() {
    // A JSON logger writes `&` as `\u0026` (Go's encoding/json, logrus)
    // and `/` as `\/` (PHP's json_encode). The pattern is written for the
    // text people see; the raw line does not match it, the decoded
    // message and fields do, and they are what is printed.
    let cfg = config(
        "  log_format: json\n",
        r#"  api:
    type: oneshot
    command: |
      echo '{"msg":"GET /x?user=ann\u0026token=s3cr3t","url":"https:\/\/h\/x?a=1\u0026token=f13ld","context":{"calls":[{"url":"\/y?b=2\u0026token=n3st3d"}]},"level":"info"}'
    logging:
      json: {merge_fields: true}
      redaction:
        patterns:
          - {pattern: '&token=[^&\s"]+', replacement: '&token=***'}
"#,
    );
    let mut sd = Sheepdog::start("redact-json", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    // Nested too: Monolog puts its `context` in an object.
    assert!(
        !log.contains("s3cr3t") && !log.contains("f13ld") && !log.contains("n3st3d"),
        "{log}"
    );
    let recs = records(&log);
    let got = of(&recs, "api-1");
    assert_eq!(got.len(), 1, "{log}");
    assert_eq!(got[0]["msg"], "GET /x?user=ann&token=***", "{log}");
    assert_eq!(got[0]["url"], "https://h/x?a=1&token=***", "{log}");
    assert_eq!(
        got[0]["context"]["calls"][0]["url"], "/y?b=2&token=***",
        "{log}"
    );
}

#[test]
fn a_json_message_cannot_forge_a_line_in_the_text_format() {
    // The app escaped what a user typed into its JSON log line (`\n`);
    // decoded, it must not become a line of its own that reads as one of
    // sheepdog's, in stdout or in the file.
    let cfg = config(
        "",
        r#"  app:
    type: oneshot
    command: |
      printf '%s\n' '{"msg":"login failed for bob\n2026-01-01T00:00:00.000Z ERROR sheepdog        | forged\r\u001b[2J","level":"info"}'
    logging:
      json: {}
      file: {path: "$DIR/app.log"}
"#,
    );
    let mut sd = Sheepdog::start("json-forge", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    let file = fs::read_to_string(sd.dir.path("app.log")).unwrap();
    for (what, text) in [("stdout", &log), ("file", &file)] {
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("2026-01-01T00:00:00.000Z")),
            "{what}:\n{text}"
        );
        assert!(
            !text.contains('\r') && !text.contains('\x1b'),
            "{what}:\n{text}"
        );
        assert_eq!(
            messages(text, "app-1"),
            [
                r"login failed for bob\n2026-01-01T00:00:00.000Z ERROR sheepdog        | forged\r\u{1b}[2J"
            ],
            "{what}:\n{text}"
        );
    }
}

/// The lines `recs` make once the pieces of cut lines are joined; checks
/// that only a line's last piece lacks `continued` and that no piece is
/// longer than `max`.
fn joined_lines(recs: &[&serde_json::Value], max: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for r in recs {
        let msg = r["msg"].as_str().unwrap();
        assert!(msg.len() <= max, "{} bytes: {r}", msg.len());
        lines.last_mut().unwrap().push_str(msg);
        if r["continued"] != true {
            lines.push(String::new());
        }
    }
    assert_eq!(lines.pop().as_deref(), Some(""), "a line was left open");
    lines
}

#[test]
#[cfg_attr(not(feature = "api"), ignore = "reads the logs API (feature `api`)")]
fn a_secret_straddling_a_cut_is_redacted_on_stdout_in_the_file_and_in_the_logs_api() {
    // The cut at 1024 bytes falls in `token=` (1020), in the secret
    // (1012), and right after `token=` (1018).
    let cfg = r#"version: "1.0"
global:
  shutdown_timeout: 10s
  log_format: json
  metrics_enabled: false
  api_port: 0
  api_socket: $DIR/api.sock
processes:
  sec:
    command: |
      python3 -c '
      for pad in (1020, 1012, 1018):
          print("x" * pad + "token=sk_live_4eC39HqLyjWDarjtT1zdp7dc rest", flush=True)
      print("short token=abc")
      ' && exec sleep 60
    logging:
      max_line_bytes: 1KiB
      file: {path: "$DIR/sec.log"}
      redaction:
        patterns: [{pattern: 'token=\w+', replacement: 'token=[redacted]'}]
"#;
    let mut sd = Sheepdog::start("redact-cut", cfg);
    sd.wait_log("short token=[redacted]");
    let want: Vec<String> = [1020, 1012, 1018]
        .iter()
        .map(|pad| "x".repeat(*pad) + "token=[redacted] rest")
        .chain(["short token=[redacted]".to_string()])
        .collect();
    let api = common::http::unix(
        &sd.dir.path("api.sock"),
        "GET",
        "/api/v1/processes/sec/logs?limit=100",
        None,
        None,
    );
    assert_eq!(api.status, 200, "{}", api.body);
    let stored: Vec<serde_json::Value> = api.json()["records"].as_array().unwrap().clone();
    let file = fs::read_to_string(sd.dir.path("sec.log")).unwrap();
    for (what, recs) in [
        ("stdout", records(&sd.log())),
        ("file", records(&file)),
        ("logs API", stored),
    ] {
        let text = serde_json::to_string(&recs).unwrap();
        assert!(!text.contains("sk_live"), "{what}: {text}");
        assert_eq!(joined_lines(&of(&recs, "sec-1"), 1024), want, "{what}");
    }
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_cut_line_is_kept_or_dropped_whole_by_min_level_and_exclude() {
    let cfg = config(
        "  log_format: json\n",
        r#"  lvl:
    type: oneshot
    command: ["python3", "-c", "print('ERROR: db down ' + 'y'*3000); print('info ' + 'y'*3000 + ' ERROR late'); print('info short'); print('ERROR: short one')"]
    logging:
      max_line_bytes: 1KiB
      min_level: warn
      level_detection: {patterns: {error: 'ERROR'}}
  exc:
    type: oneshot
    command: ["python3", "-c", "print('GET /health ' + 'z'*3000); print('GET /other ' + 'z'*3000); print('GET /health short'); print('GET /other short')"]
    logging:
      max_line_bytes: 1KiB
      filters: {exclude: ['GET /health']}
"#,
    );
    let mut sd = Sheepdog::start("cut-verdict", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let recs = records(&sd.log());
    let lvl = of(&recs, "lvl-1");
    assert!(lvl.iter().all(|r| r["level"] == "error"), "{lvl:?}");
    assert_eq!(
        joined_lines(&lvl, 1024),
        [
            "ERROR: db down ".to_string() + &"y".repeat(3000),
            "ERROR: short one".into()
        ]
    );
    assert_eq!(
        joined_lines(&of(&recs, "exc-1"), 1024),
        [
            "GET /other ".to_string() + &"z".repeat(3000),
            "GET /other short".into()
        ]
    );
}

#[test]
fn json_logs_from_a_child_are_parsed_and_their_level_honoured() {
    let cfg = config(
        "  log_format: json\n",
        r#"  monolog:
    type: oneshot
    command: |
      echo '{"message":"Order failed","context":{"order":7},"level":400,"level_name":"ERROR","channel":"local"}'
      echo '{"message":"cache hit","level":100,"level_name":"DEBUG","channel":"local"}'
      echo '{"message":"slow query","level":"warning"}'
      echo 'plain text line'
    logging:
      min_level: info
      labels: {app: shop}
      json: {merge_fields: true}
"#,
    );
    let mut sd = Sheepdog::start("jsonlogs", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let recs = records(&sd.log());
    let got = of(&recs, "monolog-1");
    let summary: Vec<(&str, &str)> = got
        .iter()
        .map(|r| (r["level"].as_str().unwrap(), r["msg"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("error", "Order failed"),
            ("warn", "slow query"),
            ("info", "plain text line")
        ],
        "the debug line is dropped by min_level"
    );
    assert_eq!(got[0]["channel"], "local");
    assert_eq!(got[0]["context"]["order"], 7);
    assert_eq!(got[0]["app"], "shop");
    assert_eq!(got[2]["app"], "shop");
}

#[test]
fn include_and_exclude_filters_choose_the_lines() {
    let cfg = config(
        "",
        r#"  nginx:
    type: oneshot
    command: "printf 'GET / 200\nGET /health 200\nPOST /login 302\nworker started\n'"
    logging:
      filters: {include: ['^(GET|POST) '], exclude: ['/health']}
"#,
    );
    let mut sd = Sheepdog::start("filters", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(
        messages(&sd.log(), "nginx-1"),
        ["GET / 200", "POST /login 302"]
    );
}

/// Lines of `path` and its rotated files, oldest first.
fn rotated_lines(path: &Path, max_files: u32) -> Vec<String> {
    let mut files: Vec<std::path::PathBuf> = (1..=max_files)
        .rev()
        .map(|n| std::path::PathBuf::from(format!("{}.{n}", path.display())))
        .collect();
    files.push(path.to_path_buf());
    files
        .iter()
        .flat_map(|f| {
            fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn files_rotate_at_size_without_losing_or_duplicating_a_line() {
    let cfg = config(
        "",
        r#"  writer:
    type: oneshot
    command: ["python3", "-c", "for i in range(5000): print('line %05d ' % i + 'y' * 40)"]
    logging:
      file: {path: "$DIR/{process}/{instance}.log", max_size: 16KiB, max_files: 100, stdout_too: false}
"#,
    );
    let mut sd = Sheepdog::start("rotate", &cfg);
    // The {process} directory must exist: sheepdog refuses to start otherwise.
    assert_eq!(sd.exit_code(WAIT), 2);
    assert!(
        sd.log()
            .contains("processes.writer.logging.file.path: unable to open log file")
            && sd.log().contains("does not exist"),
        "{}",
        sd.log()
    );
    let dir = sd.dir.path("writer");
    fs::create_dir(&dir).unwrap();
    let cfg_path = sd.dir.path("sheepdog.yaml");
    let mut sd2 = Sheepdog::start_file("rotate2", &cfg_path, |_| {});
    assert_eq!(sd2.exit_code(WAIT), 0, "{}", sd2.log());
    assert!(!sd2.log().contains("line 0"), "stdout_too: false");
    let path = dir.join("writer-1.log");
    let mut n_files = 0;
    for f in fs::read_dir(&dir).unwrap() {
        let f = f.unwrap();
        n_files += 1;
        let len = f.metadata().unwrap().len();
        assert!(len <= 16 * 1024, "{:?} is {len} bytes", f.path());
    }
    assert!(n_files > 10, "only {n_files} files");
    let nums: Vec<u32> = rotated_lines(&path, 100)
        .iter()
        .map(|l| {
            let msg = l.split(" | ").nth(1).unwrap();
            msg[5..10].parse().unwrap()
        })
        .collect();
    assert_eq!(
        nums,
        (0..5000).collect::<Vec<u32>>(),
        "every line once, in order"
    );
}

#[test]
fn sigusr1_reopens_process_and_own_log_files() {
    let cfg = config(
        "  log_file: $DIR/sheepdog-own.log\n",
        r#"  ticker:
    command: "i=0; while :; do i=$((i+1)); echo n $i; sleep 0.02; done"
    logging:
      file: {path: "$DIR/ticker.log", stdout_too: false}
"#,
    );
    let mut sd = Sheepdog::start("reopen", &cfg);
    let file = sd.dir.path("ticker.log");
    let own = sd.dir.path("sheepdog-own.log");
    let count = |p: &Path| fs::read_to_string(p).unwrap_or_default().lines().count();
    assert!(wait_until(WAIT, || count(&file) >= 5), "{}", sd.log());
    assert!(fs::read_to_string(&own)
        .unwrap()
        .contains("ticker-1: started"));
    fs::rename(&file, sd.dir.path("ticker.log.moved")).unwrap();
    fs::rename(&own, sd.dir.path("sheepdog-own.log.moved")).unwrap();
    sd.signal(USR1);
    sd.wait_log("received SIGUSR1: reopening log files");
    assert!(wait_until(WAIT, || count(&file) >= 5), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let nums = |p: &Path| -> Vec<u64> {
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let mut all = nums(&sd.dir.path("ticker.log.moved"));
    let old = all.len();
    all.extend(nums(&file));
    assert!(old >= 5 && all.len() > old);
    assert_eq!(
        all,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "no line lost or repeated across the reopen"
    );
    let own_new = fs::read_to_string(&own).unwrap();
    assert!(own_new.contains("shutting down"), "{own_new}");
    assert!(!own_new.contains("ticker-1: started"));
}

#[test]
fn stdout_false_discards_into_dev_null_and_inherit_passes_our_own_fd() {
    let cfg = config(
        "",
        r#"  quiet:
    command: "exec sleep 60"
    stdout: false
    logging: {stderr: false}
  direct:
    command: "echo raw line straight through; exec sleep 60"
    logging: {stdout: inherit}
  piped:
    command: "exec sleep 60"
"#,
    );
    let mut sd = Sheepdog::start("streams", &cfg);
    sd.wait_log("quiet-1: started");
    sd.wait_log("direct-1: started");
    sd.wait_log("piped-1: started");
    sd.wait_log("raw line straight through");
    let quiet = sd.pids_of("quiet-1")[0];
    let direct = sd.pids_of("direct-1")[0];
    let piped = sd.pids_of("piped-1")[0];
    assert_eq!(readlink(quiet, 1), "/dev/null");
    assert_eq!(readlink(quiet, 2), "/dev/null");
    let ours = readlink(sd.pid(), 1);
    assert!(ours.ends_with("sheepdog.log"), "{ours}");
    assert_eq!(
        readlink(direct, 1),
        ours,
        "inherit: the very same open file"
    );
    assert!(
        readlink(direct, 2).starts_with("pipe:"),
        "stderr still logged"
    );
    assert!(readlink(piped, 1).starts_with("pipe:"));
    // Inherited output is not framed or prefixed.
    assert!(
        sd.log().lines().any(|l| l == "raw line straight through"),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// Replace the leading `2026-01-01T12:00:00.123Z` of a text line.
fn norm_text(line: &str) -> String {
    let b = line.as_bytes();
    if b.len() > 24 && b[23] == b'Z' && b[10] == b'T' && line[..4].parse::<u32>().is_ok() {
        format!("<ts>{}", &line[24..])
    } else {
        line.to_string()
    }
}

/// Replace the value of `"ts":"…"` (24 characters) in a JSON line.
fn norm_json(line: &str) -> String {
    match line.find(r#""ts":""#) {
        Some(i) if line.len() >= i + 6 + 24 => {
            format!("{}<ts>{}", &line[..i + 6], &line[i + 6 + 24..])
        }
        _ => line.to_string(),
    }
}

const GOLDEN_PROCESSES: &str = r#"  talker:
    type: oneshot
    command: "echo hello; echo 'oops \"quoted\"' >&2"
    logging: {labels: {team: core}}
  background-worker:
    type: oneshot
    depends_on: [talker]
    command: "true"
"#;

#[test]
fn text_format_golden() {
    let mut sd = Sheepdog::start("golden-text", &config("", GOLDEN_PROCESSES));
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    // Two pipes and sheepdog's own record race each other: compare sorted.
    let mut got: Vec<String> = sd
        .log()
        .lines()
        .map(norm_text)
        .filter(|l| l.contains("talker-1"))
        .filter(|l| !l.contains("started (pid"))
        .collect();
    got.sort();
    let mut want = [
        format!("<ts> INFO  {:<19} | hello", "talker-1"),
        format!("<ts> INFO  {:<19} | oops \"quoted\"", "talker-1"),
        format!("<ts> INFO  {:<19} | talker-1: completed", "sheepdog"),
    ];
    want.sort();
    assert_eq!(got, want, "{}", sd.log());
}

#[test]
fn json_format_golden() {
    let cfg = config("  log_format: json\n", GOLDEN_PROCESSES);
    let mut sd = Sheepdog::start("golden-json", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    let mut got: Vec<String> = log
        .lines()
        .map(norm_json)
        .filter(|l| l.contains(r#""instance":"talker-1""#))
        .filter(|l| !l.contains(r#""event":"started""#))
        .collect();
    got.sort(); // sorted: the two pipes and sheepdog's record race each other
    assert_eq!(
        got,
        [
            r#"{"ts":"<ts>","level":"info","process":"sheepdog","instance":"talker-1","msg":"talker-1: completed","event":"completed","exit_code":0}"#,
            r#"{"ts":"<ts>","level":"info","process":"talker","instance":"talker-1","stream":"stderr","msg":"oops \"quoted\"","team":"core"}"#,
            r#"{"ts":"<ts>","level":"info","process":"talker","instance":"talker-1","stream":"stdout","msg":"hello","team":"core"}"#,
        ],
        "{log}"
    );
    // Decisions carry structured fields.
    let recs = records(&log);
    let started = recs
        .iter()
        .find(|r| r["event"] == "started" && r["instance"] == "talker-1")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(started["process"], "sheepdog");
    assert!(started["pid"].as_u64().is_some_and(|p| p > 1));
    assert!(recs
        .iter()
        .all(|r| r["ts"].as_str().is_some_and(|t| t.len() == 24)));
}

#[test]
fn restart_decisions_carry_attempt_backoff_and_exit_code_in_json() {
    let cfg = config(
        "  log_format: json\n  max_restart_attempts: 1\n",
        r#"  crashy:
    command: "exit 3"
    restart: on-failure
"#,
    );
    let mut sd = Sheepdog::start("decisions", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    let recs = records(&log);
    let restarting = recs
        .iter()
        .find(|r| r["event"] == "restarting")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(restarting["exit_code"], 3);
    assert_eq!(restarting["attempt"], 1);
    assert_eq!(restarting["backoff_ms"], 50);
    assert_eq!(restarting["reason"], "exit");
    assert!(restarting["msg"]
        .as_str()
        .unwrap()
        .starts_with("crashy-1: exited 3 after"));
    let failed = recs.iter().find(|r| r["event"] == "failed").unwrap();
    assert_eq!(failed["level"], "error");
    assert_eq!(failed["exit_code"], 3);
    let done = recs
        .iter()
        .find(|r| r["event"] == "shutdown_complete")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(done["exit_code"], 1);
    assert_eq!(done["orphans_reaped"], 0);
    assert!(done["duration_ms"].as_u64().is_some(), "{done}");
}

/// Milliseconds since midnight of a record's `ts` (`…T22:31:28.575Z`).
fn ts_ms(rec: &serde_json::Value) -> u64 {
    let ts = rec["ts"].as_str().unwrap_or_else(|| panic!("no ts: {rec}"));
    let clock = &ts[11..23];
    let n = |r: std::ops::Range<usize>| clock[r].parse::<u64>().unwrap();
    ((n(0..2) * 60 + n(3..5)) * 60 + n(6..8)) * 1000 + n(9..12)
}

#[test]
fn a_run_time_does_not_include_the_wait_for_the_last_output() {
    // The background sleep keeps the output pipe open, so sheepdog waits
    // its full last-lines wait (100ms) after the exit before logging it.
    let cfg = config(
        "  log_format: json\n  log_level: debug\n",
        r#"  app:
    command: "sleep 5 & exit 3"
    restart: never
"#,
    );
    let mut sd = Sheepdog::start("runtime", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    let recs = records(&log);
    let find = |event: &str| {
        recs.iter()
            .find(|r| r["event"] == event && r["instance"] == "app-1" && r.get("pid").is_some())
            .unwrap_or_else(|| panic!("no {event}:\n{log}"))
    };
    let (started, exited) = (find("started"), find("exited"));
    let uptime = exited["uptime_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("{exited}"));
    // The exit is logged at least 100ms after it came; the run time counts
    // from just before the start's own log line (by less than 50ms even on
    // a loaded machine), so with the wait in it, it would exceed this.
    let logged_after = ts_ms(exited) - ts_ms(started);
    assert!(
        uptime + 50 <= logged_after,
        "uptime {uptime}ms, exit logged {logged_after}ms after the start:\n{log}"
    );
}

#[test]
fn a_missing_log_directory_is_a_clear_start_up_error() {
    let cfg = config(
        "  log_file: /nonexistent-sheepdog-dir/own.log\n",
        "  a:\n    command: \"true\"\n",
    );
    let mut sd = Sheepdog::start("nodir", &cfg);
    assert_eq!(sd.exit_code(WAIT), 2);
    assert!(
        sd.log().contains(
            "global.log_file: unable to open log file /nonexistent-sheepdog-dir/own.log: directory /nonexistent-sheepdog-dir does not exist"
        ),
        "{}",
        sd.log()
    );
}

#[test]
fn a_log_file_per_run_is_closed_when_the_run_ends() {
    // Regression: each run of a job (`{instance}` = `j#N`) opened its own
    // file and kept it open, until every spawn failed with EMFILE.
    let logs = TempDir::new("log-per-run");
    let cfg = config(
        "",
        &format!(
            "  j:\n    command: \"echo run-$SHEEPDOG_RUN_ID\"\n    schedule: \"@every 100ms\"\n    logging:\n      file: {{path: '{}/{{process}}-{{instance}}.log'}}\n",
            logs.path("").display()
        ),
    );
    let mut sd = Sheepdog::start("log-per-run", &cfg);
    let files = || fs::read_dir(logs.path("")).map(|d| d.count()).unwrap_or(0);
    assert!(wait_until(WAIT, || files() >= 12), "{}", sd.log());
    // At most the run going on now holds its file.
    let open = open_files_under(sd.pid(), &logs.path(""));
    assert!(open <= 1, "{open} log files still open after 12 runs");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn links_a_child_plants_where_sheepdog_writes_are_not_written_through() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to run a child as another user");
        return;
    }
    // A directory the child's user owns, as Laravel's storage/logs is.
    let shared = TempDir::new("planted-links");
    let logs = shared.path("logs");
    fs::create_dir(&logs).unwrap();
    std::os::unix::fs::chown(&logs, Some(65534), Some(65534)).unwrap();
    let victim = shared.write("victim", "root only\n");
    // Planted before start, in the readiness file's place and its temporary.
    std::os::unix::fs::symlink(&victim, logs.join("ready")).unwrap();
    std::os::unix::fs::symlink(&victim, logs.join("ready.tmp")).unwrap();
    let (l, v) = (logs.display(), victim.display());
    let cfg = config(
        &format!("  readiness_file: {l}/ready\n"),
        &format!(
            r#"  app:
    user: "65534"
    command: "ln -s {v} {l}/app.log && echo INJECTED && exec sleep 1000"
    logging:
      file: {{path: "{l}/{{process}}.log", stdout_too: false}}
"#
        ),
    );
    let mut sd = Sheepdog::start("planted", &cfg);
    sd.wait_log("which others than root and sheepdog may write (owner uid 65534");
    assert!(
        wait_until(WAIT, || messages(&sd.log(), "app-1") == ["INJECTED"]),
        "the line goes to stdout instead:\n{}",
        sd.log()
    );
    let ready = logs.join("ready");
    assert!(
        wait_until(WAIT, || fs::read_to_string(&ready)
            .is_ok_and(|r| r.starts_with("ready\n"))),
        "{}",
        sd.log()
    );
    assert!(!fs::symlink_metadata(&ready)
        .unwrap()
        .file_type()
        .is_symlink());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root only\n");
}

#[test]
fn a_parent_directory_a_child_swaps_for_a_link_is_not_followed() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to run a child as another user");
        return;
    }
    // Laravel's layout: storage/ and storage/logs belong to the app's user,
    // who replaces logs/ with a link to a directory of root's files.
    let shared = TempDir::new("swapped-parent");
    let victim = shared.path("victim");
    fs::create_dir(&victim).unwrap();
    for f in ["app.log", "rot.log", "rot.log.1"] {
        fs::write(victim.join(f), "root only\n").unwrap();
    }
    for s in ["s1", "s2"] {
        fs::create_dir_all(shared.path(s).join("logs")).unwrap();
        for d in [shared.path(s), shared.path(s).join("logs")] {
            std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
        }
    }
    // A link root made, in root's directory: followed, rotation included.
    fs::create_dir(shared.path("real")).unwrap();
    std::os::unix::fs::symlink(shared.path("real"), shared.path("linked")).unwrap();
    let (d, v) = (shared.0.display(), victim.display());
    let cfg = config(
        "",
        &format!(
            r#"  app:
    user: nobody
    command: "cd {d}/s1; if [ ! -L logs ]; then mv logs logs.old; ln -s {v} logs; echo swapped; exit 1; fi; echo PAYLOAD; exec sleep 1000"
    logging:
      file: {{path: "{d}/s1/logs/app.log", stdout_too: false}}
  rot:
    user: nobody
    command: "cd {d}/s2; echo first; until [ -s logs/rot.log ]; do sleep 0.01; done; mv logs logs.old; ln -s {v} logs; for i in $(seq 40); do echo rot-line-$i; done; exec sleep 1000"
    logging:
      file: {{path: "{d}/s2/logs/rot.log", max_size: 1KiB, max_files: 2, stdout_too: false}}
  trusted:
    command: "for i in $(seq 40); do echo trusted-line-$i; done; exec sleep 1000"
    logging:
      file: {{path: "{d}/linked/trusted.log", max_size: 1KiB, max_files: 2, stdout_too: false}}
"#
        ),
    );
    let mut sd = Sheepdog::start("swapped-parent", &cfg);
    for s in ["s1", "s2"] {
        sd.wait_log(&format!(
            "logs is a symlink in {d}/{s}, which others than root and sheepdog may write (owner uid 65534"
        ));
    }
    // The restarted child's line goes to stdout, not into root's file.
    assert!(
        wait_until(WAIT, || messages(&sd.log(), "app-1")
            .contains(&"PAYLOAD".into())),
        "{}",
        sd.log()
    );
    let real = shared.path("real");
    assert!(
        wait_until(WAIT, || fs::read_to_string(real.join("trusted.log"))
            .is_ok_and(|t| t.contains("trusted-line-40\n"))),
        "{}",
        sd.log()
    );
    assert!(real.join("trusted.log.1").exists(), "{}", sd.log());
    assert!(fs::symlink_metadata(shared.path("linked"))
        .unwrap()
        .is_symlink());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let mut left: Vec<_> = fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["app.log", "rot.log", "rot.log.1"]);
    for f in left {
        assert_eq!(fs::read_to_string(victim.join(f)).unwrap(), "root only\n");
    }
}

#[test]
fn a_crash_loop_behind_a_stdout_nobody_reads_does_not_pile_up_descriptors() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = TempDir::new("stall-fds");
    let fifo = dir.path("stdout");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // A reader that does not read, then the write end for sheepdog.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let own = dir.path("own.log");
    let cfg = config(
        &format!(
            "  log_file: {}\n  restart_backoff_max: 50ms\n",
            own.display()
        ),
        "  chatty:\n    command: \"yes chatty\"\n  crasher:\n    command: \"exit 2\"\n",
    );
    let mut sd = Sheepdog::start_with("stall-fds", &cfg, |cmd| {
        cmd.stdout(writer);
    });
    let own_log = || fs::read_to_string(&own).unwrap_or_default();
    assert!(
        wait_until(WAIT, || own_log().contains("crasher-1: start deferred")),
        "{}",
        own_log()
    );
    let fds = fs::read_dir(format!("/proc/{}/fd", sd.pid()))
        .unwrap()
        .count();
    assert!(fds < 120, "{fds} descriptors open:\n{}", own_log());
    // Drained again: the crash loop goes on.
    let starts = own_log().matches("crasher-1: started").count();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => break,
            }
        }
    });
    assert!(
        wait_until(WAIT, || own_log().matches("crasher-1: started").count()
            > starts + 2),
        "{}",
        own_log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", own_log());
    let _ = drain.join();
}

/// A FIFO at `path` with a reader that reads nothing until told (`Drain`);
/// its pipe holds one page, so that it fills at once.
fn stalled_fifo(path: &Path) -> fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    let _ = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096));
    reader
}

/// Reads a FIFO on a thread while `on` is set, until `join` (or `WAIT`
/// twice over); `text` is what it read so far.
struct Drain {
    on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Drain {
    fn new(mut reader: fs::File, on: bool) -> Drain {
        use std::io::Read;
        let on = Arc::new(AtomicBool::new(on));
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (on2, stop2, got2) = (on.clone(), stop.clone(), got.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let deadline = Instant::now() + 2 * WAIT;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                if on2.load(Ordering::Relaxed) {
                    if let Ok(n @ 1..) = reader.read(&mut buf) {
                        got2.lock().unwrap().extend_from_slice(&buf[..n]);
                        continue;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Drain {
            on,
            stop,
            got,
            thread,
        }
    }

    fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.got.lock().unwrap()).into_owned()
    }

    fn join(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let Drain { thread, got, .. } = self;
        thread.join().unwrap();
        let got = got.lock().unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }
}

/// Review 1: sheepdog's own records went to `global.log_file` with blocking
/// writes from the supervisor and instance threads: a FIFO whose reader
/// stalled stopped every restart and the shutdown deadline.
#[test]
fn a_global_log_file_whose_reader_stalls_holds_up_no_decision() {
    let dir = TempDir::new("own-fifo");
    let fifo = dir.path("own.fifo");
    let drain = Drain::new(stalled_fifo(&fifo), false);
    let cfg = dir.write(
        "sheepdog.yaml",
        &format!(
            "version: \"1.0\"\nglobal: {{shutdown_timeout: 2s, restart_backoff_initial: 0s, \
             api_enabled: false, metrics_enabled: false, log_file: {}}}\nprocesses:\n  \
             crasher: {{command: \"exit 3\"}}\n",
            fifo.display()
        ),
    );
    let mut sd = Sheepdog::start_file("own-fifo", &cfg, |_| {});
    let stalled = format!(
        "unable to write to {}: its reader does not keep up",
        fifo.display()
    );
    sd.wait_log(&stalled);
    // Restarts go on with the FIFO full.
    let starts = sd.count("crasher-1: started");
    assert!(
        sd.wait_log_n("crasher-1: started", starts + 20, WAIT),
        "{}",
        sd.log()
    );
    // Read again: what was lost is said once.
    drain.set(true);
    sd.wait_log(&format!("{} works again; ", fifo.display()));
    assert_eq!(sd.count(&stalled), 1, "{}", sd.log());
    // Stalled again, the shutdown keeps its deadline.
    drain.set(false);
    assert!(sd.wait_log_n(&stalled, 2, WAIT), "{}", sd.log());
    sd.signal(TERM);
    let stop = Instant::now();
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert!(
        stop.elapsed() < Duration::from_secs(8),
        "{:?}",
        stop.elapsed()
    );
    let got = drain.join();
    assert!(got.contains("crasher-1: started"), "{got}");
}

/// Review 8: one process's log file that blocked (a FIFO nobody read)
/// stopped every other process's output on the single output thread.
#[test]
fn a_process_log_file_whose_reader_stalls_holds_up_only_that_process() {
    let dir = TempDir::new("proc-fifo");
    let fifo = dir.path("flood.fifo");
    let drain = Drain::new(stalled_fifo(&fifo), false);
    let cfg = dir.write(
        "sheepdog.yaml",
        &config(
            "",
            &format!(
                "  flood:\n    command: \"yes x\"\n    logging: {{file: {{path: {}, stdout_too: \
                 false}}}}\n  other:\n    command: \"i=0; while :; do i=$((i+1)); echo tick \
                 $i; sleep 0.05; done\"\n",
                fifo.display()
            ),
        ),
    );
    let mut sd = Sheepdog::start_file("proc-fifo", &cfg, |_| {});
    let stalled = format!(
        "unable to write to {}: its reader does not keep up",
        fifo.display()
    );
    sd.wait_log(&stalled);
    let ticks = sd.count("| tick ");
    assert!(
        sd.wait_log_n("| tick ", ticks + 10, WAIT),
        "other's lines stopped:\n{}",
        sd.log()
    );
    drain.set(true);
    sd.wait_log(&format!("{} works again; ", fifo.display()));
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let got = drain.join();
    // Whole lines, though a pipe takes part of a write when it is nearly
    // full; only the last may be cut, at the exit.
    let lines: Vec<&str> = got.lines().collect();
    assert!(lines.len() > 100, "{}", lines.len());
    let cut = lines[..lines.len() - 1]
        .iter()
        .filter(|l| !l.ends_with(" | x"))
        .collect::<Vec<_>>();
    assert!(cut.is_empty(), "lines cut or mixed: {cut:?}");
}

/// Review 3: a log file that is a trusted link to a FIFO (or /dev/stdout)
/// was "rotated" after max_size: the link renamed away and a regular file
/// put in its place, so the lines silently went to disk.
#[test]
fn a_log_file_linked_to_a_fifo_is_never_rotated() {
    let dir = TempDir::new("link-fifo");
    let fifo = dir.path("out.fifo");
    let drain = Drain::new(stalled_fifo(&fifo), true);
    let link = dir.path("app.log");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let cfg = dir.write(
        "sheepdog.yaml",
        &config(
            "",
            &format!(
                "  app:\n    command: \"i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo \
                 line-$i-padpadpadpadpadpadpadpad; done; exec sleep 100\"\n    logging: \
                 {{file: {{path: {}, max_size: 1KiB, max_files: 2, stdout_too: false}}}}\n",
                link.display()
            ),
        ),
    );
    let mut sd = Sheepdog::start_file("link-fifo", &cfg, |_| {});
    assert!(
        wait_until(WAIT, || drain.text().contains("| line-200-")),
        "{}\n{}",
        drain.text(),
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let got = drain.join();
    let nums: Vec<u32> = got
        .lines()
        .filter_map(|l| l.split("| line-").nth(1)?.split('-').next()?.parse().ok())
        .collect();
    assert_eq!(nums, (1..=200).collect::<Vec<_>>(), "{got}");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!dir.path("app.log.1").exists());
}

/// A process `w` whose `file` is `dir/w.log` (`max_size`, 3 kept): it
/// prints `first` numbered lines, then, once the test writes a count into
/// `dir/go`, that many more and `last`.
fn phased_writer(dir: &TempDir, first: u32, max_size: &str) -> Sheepdog {
    let go = dir.path("go");
    let script = format!(
        "import os, time\n\
         def out(a, b):\n    for i in range(a, b): print('line-%05d %s' % (i, 'x' * 40), flush=True)\n\
         out(0, {first})\n\
         while not os.path.exists('{go}'): time.sleep(0.01)\n\
         out({first}, {first} + int(open('{go}').read()))\n\
         print('last', flush=True)\n\
         time.sleep(100)\n",
        go = go.display()
    );
    let py = dir.write("w.py", &script);
    let cfg = dir.write(
        "sheepdog.yaml",
        &config(
            "",
            &format!(
                "  w:\n    command: [python3, {}]\n    logging: {{file: {{path: {}, max_size: \
                 {max_size}, max_files: 3, stdout_too: false}}}}\n",
                py.display(),
                dir.path("w.log").display()
            ),
        ),
    );
    Sheepdog::start_file("phased", &cfg, |_| {})
}

/// Tell `phased_writer` to print `n` more lines (written whole, then moved
/// into place).
fn go(dir: &TempDir, n: usize) {
    dir.write("go.tmp", &n.to_string());
    fs::rename(dir.path("go.tmp"), dir.path("go")).unwrap();
}

/// Review 2: a log file deleted (or moved away without a SIGUSR1) made
/// every later line run the rotation again: the rotated files shifted out
/// one per line and deleted, and an error printed per line.
#[test]
fn a_deleted_log_file_is_started_anew_without_touching_the_rotated_ones() {
    let dir = TempDir::new("deleted-log");
    let mut sd = phased_writer(&dir, 200, "4KiB");
    let log = dir.path("w.log");
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    assert!(
        wait_until(WAIT, || read(&log).contains("line-00199 ")),
        "{}",
        sd.log()
    );
    let rotated = |n| dir.path(&format!("w.log.{n}"));
    let before: Vec<String> = (1..=3).map(|n| read(&rotated(n))).collect();
    assert!(!before[2].is_empty(), "not rotated 3 times yet");
    // Past the point where w.log would rotate, and half a file more: the
    // new file does not reach max_size.
    let text = read(&log);
    let line = text.lines().next().unwrap().len() + 1;
    let n = (4096 - text.len()) / line + 1 + 4096 / line / 2;
    fs::remove_file(&log).unwrap();
    go(&dir, n);
    assert!(
        wait_until(WAIT, || read(&log).contains("| last")),
        "{}",
        sd.log()
    );
    let after: Vec<String> = (1..=3).map(|n| read(&rotated(n))).collect();
    assert_eq!(before, after, "the rotated files changed");
    // sheepdog's own warning goes out through its stdout writer, which
    // may be behind the line the file already holds.
    sd.wait_log("was moved or deleted without a SIGUSR1");
    assert_eq!(
        sd.count("was moved or deleted without a SIGUSR1"),
        1,
        "{}",
        sd.log()
    );
    assert_eq!(sd.count("unable to"), 0, "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// Review 9: after an external `copytruncate` the next rotation came early
/// by the size truncated, since the count of bytes written was never
/// checked against the file.
#[test]
fn a_copytruncated_log_file_rotates_at_its_real_size() {
    let dir = TempDir::new("copytruncate");
    let mut sd = phased_writer(&dir, 60, "8KiB");
    let log = dir.path("w.log");
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    assert!(
        wait_until(WAIT, || read(&log).contains("line-00059 ")),
        "{}",
        sd.log()
    );
    // What logrotate's copytruncate does.
    let copy = read(&log);
    assert!(copy.len() > 4096, "{}", copy.len());
    fs::write(dir.path("w.log.1"), &copy).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    // Less than max_size in the file, more since it was opened.
    let line = copy.lines().next().unwrap().len() + 1;
    go(&dir, 6000 / line);
    assert!(
        wait_until(WAIT, || read(&log).contains("| last")),
        "{}",
        sd.log()
    );
    assert!(!dir.path("w.log.2").exists(), "rotated early");
    assert_eq!(read(&dir.path("w.log.1")), copy);
    assert_eq!(read(&log).lines().count(), 6000 / line + 1);
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// Review 6: `global.log_file` naming a process's log file was accepted,
/// and sheepdog's own records were lost when the process's writer rotated
/// the file.
#[test]
fn the_global_log_file_may_not_be_a_process_log_file() {
    let dir = TempDir::new("own-clash");
    let cfg = dir.write(
        "sheepdog.yaml",
        &config(
            &format!("  log_file: {}\n", dir.path("all.log").display()),
            &format!(
                "  a:\n    command: \"true\"\n    logging: {{file: {{path: {}/./all.log}}}}\n",
                dir.0.display()
            ),
        ),
    );
    let mut sd = Sheepdog::start_file("own-clash", &cfg, |_| {});
    assert_eq!(sd.exit_code(WAIT), 2, "{}", sd.log());
    assert!(
        sd.log().contains(
            "processes.a.logging.file.path: the same file as global.log_file; expected a file of \
             its own"
        ),
        "{}",
        sd.log()
    );
    // `check` says it too, as what `run` refuses.
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("check").arg("-c").arg(&cfg);
    let out = output_within(cmd, WAIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the same file as global.log_file"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A log file at `/dev/stdout` while sheepdog's stdout is a regular file
/// opened without O_APPEND (`sheepdog > out.log`, as this harness does):
/// reopening it gave a second offset, and sheepdog's own lines, written at
/// the first, overwrote the child's. The file is shared instead.
#[test]
fn a_log_file_at_dev_stdout_shares_a_redirected_stdout_file() {
    let cfg = config(
        "",
        r#"  app:
    type: oneshot
    command: "for i in $(seq 1 200); do echo app-line-$i; done"
    logging:
      file: {path: /dev/stdout, stdout_too: false}
"#,
    );
    let mut sd = Sheepdog::start("dev-stdout-file", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("app-line-")).collect();
    assert_eq!(lines.len(), 200, "{log}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.ends_with(&format!("app-line-{}", i + 1)), "{l}\n{log}");
    }
    assert!(log.contains("shutdown complete"), "{log}");
}

/// `/proc/self/fd/1` and `/dev/fd/1` with sheepdog's stdout a pipe (as
/// under `docker run`): the link's text (`pipe:[N]`) names no file, and
/// the walk took it as one ("No such file or directory"); a link in /proc
/// is the kernel's to follow.
#[test]
fn a_log_file_through_proc_fd_reaches_a_piped_stdout() {
    use std::io::Read;
    let cfg = config(
        "",
        r#"  a:
    type: oneshot
    command: "echo line-from-a"
    logging:
      file: {path: /proc/self/fd/1, stdout_too: false}
  b:
    type: oneshot
    command: "echo line-from-b"
    logging:
      file: {path: /dev/fd/1, stdout_too: false}
"#,
    );
    let mut sd = Sheepdog::start_with("proc-fd-pipe", &cfg, |c| {
        c.stdout(std::process::Stdio::piped());
    });
    let mut pipe = sd.child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    });
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let out = reader.join().expect("read stdout");
    for line in ["line-from-a", "line-from-b"] {
        assert!(out.contains(line), "{line} missing:\n{out}\n{}", sd.log());
    }
    assert!(!out.contains("unable to open"), "{out}");
}

/// A log file that is sheepdog's own stdout (a root-made link to
/// /proc/self/fd/1, like /dev/stdout, with stdout a regular file) is not
/// rotated: rotating renamed the link away and put a new file in its
/// place (at /dev/stdout itself, for everyone in the container).
#[test]
fn sheepdogs_own_stdout_file_is_never_rotated() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("own-stdout-rotation");
    let links = dir.path("links");
    std::fs::create_dir(&links).unwrap();
    std::fs::set_permissions(&links, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/proc/self/fd/1", links.join("out")).unwrap();
    let cfg = config(
        "",
        &format!(
            r#"  app:
    type: oneshot
    command: "for i in $(seq 1 100); do echo app-line-$i-..............................; done"
    logging:
      file: {{path: {}, max_size: 1KiB, stdout_too: false}}
"#,
            links.join("out").display()
        ),
    );
    let file = dir.write("sheepdog.yaml", &cfg);
    let mut sd = Sheepdog::start_file("own-stdout-rotation", &file, |_| {});
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert_eq!(log.matches("app-line-").count(), 100, "{log}");
    let out = std::fs::symlink_metadata(links.join("out")).unwrap();
    assert!(
        out.file_type().is_symlink(),
        "the link was replaced:\n{log}"
    );
    assert!(!links.join("out.1").exists(), "rotated:\n{log}");
}

/// Review (logs): a full disk (here: RLIMIT_FSIZE, set on the running
/// sheepdog) took part of a line; once there was room again the next line
/// was glued to that head (`…xxxx2026-…Z INFO  w-1 | after`), and the lines
/// the disk did take whole were counted as lost too.
#[test]
fn a_line_a_full_disk_took_in_part_is_taken_back() {
    let dir = TempDir::new("disk-full");
    let script = format!(
        "import os, time\n\
         def wait(f):\n    while not os.path.exists(f): time.sleep(0.01)\n\
         wait('{d}/go1')\n\
         for i in range(60): print('line-%05d %s' % (i, 'x' * 40), flush=True)\n\
         wait('{d}/go2')\n\
         print('after', flush=True)\n\
         time.sleep(100)\n",
        d = dir.0.display()
    );
    let py = dir.write("w.py", &script);
    let log = dir.path("w.log");
    let cfg = dir.write(
        "sheepdog.yaml",
        &config(
            "",
            &format!(
                "  w:\n    command: [python3, {}]\n    logging: {{file: {{path: {}, max_size: \
                 1MiB, stdout_too: false}}}}\n",
                py.display(),
                log.display()
            ),
        ),
    );
    let mut sd = Sheepdog::start_file("disk-full", &cfg, |_| {});
    sd.wait_log("w-1: started");
    // Files stop at 4,096 bytes: 43 of the 94-byte lines and a part of the
    // 44th fit. (sheepdog's own log, its stdout, has room for its lines.)
    let limit = |v: &str| {
        let pid = sd.pid().to_string();
        let mut cmd = std::process::Command::new("prlimit");
        cmd.args(["--pid", &pid, &format!("--fsize={v}:")]);
        let out = output_within(cmd, WAIT);
        assert!(out.status.success(), "{out:?}");
    };
    limit("4096");
    dir.write("go1", "");
    sd.wait_log("unable to write to");
    let whole = |text: &str| {
        text.lines().all(|l| {
            let msg = l.split_once(" | ").map_or("", |(_, m)| m);
            msg == "after" || (msg.len() == 51 && msg.starts_with("line-"))
        })
    };
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n') && whole(&text), "{text}");
    let kept = text.lines().count();
    assert!(kept > 0 && kept < 60, "{text}");
    limit("unlimited");
    dir.write("go2", "");
    assert!(
        wait_until(WAIT, || fs::read_to_string(&log)
            .unwrap()
            .contains("| after\n")),
        "{}",
        sd.log()
    );
    let text = fs::read_to_string(&log).unwrap();
    assert!(whole(&text), "{text}");
    // Not "works again" alone: the failure's own line ends with "until
    // it works again", and the count ran before the recovery was logged.
    let recovered = format!("works again; {} lines were lost", 60 - kept);
    sd.wait_log(&recovered);
    assert_eq!(sd.count(&recovered), 1, "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// Review (logs): a child that shares sheepdog's stdout (`inherit`) set
/// O_NONBLOCK on it, as asyncio's pipes and libuv do (the flag belongs to
/// the pipe, not to one process). Then every write that found the pipe
/// full failed with EAGAIN, and another child's lines were dropped
/// ("unable to write to stdout: Resource temporarily unavailable") where
/// a slow reader should only slow it down.
#[test]
fn a_stdout_a_child_made_non_blocking_still_loses_no_line() {
    let cfg = config(
        "",
        r#"  nb:
    command: [python3, -c, "import os, time; os.set_blocking(1, False); open('$DIR/nb-ready', 'w').close(); time.sleep(100)"]
    logging: {stdout: inherit}
  flood:
    command: [python3, -c, "import os, time\nwhile not os.path.exists('$DIR/nb-ready'): time.sleep(0.01)\nfor i in range(5000): print('flood-%05d %s' % (i, 'y' * 60))\nprint('flood-done', flush=True)\ntime.sleep(100)"]
"#,
    );
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let mut sd = Sheepdog::start_with("nonblocking-stdout", &cfg, |cmd| {
        cmd.stdout(writer);
    });
    let got = Arc::new(Mutex::new(String::new()));
    let ready = sd.dir.path("nb-ready");
    let g = got.clone();
    // A reader slower than the flood: the pipe is full most of the time.
    std::thread::spawn(move || {
        use std::io::Read;
        let _ = wait_until(WAIT, || ready.exists());
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            g.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let done = wait_until(WAIT, || {
        got.lock().unwrap().contains("| flood-done") || sd.log().contains("unable to write")
    });
    let text = got.lock().unwrap().clone();
    let lines = messages(&text, "flood-1").len();
    assert!(done && lines == 5001, "{lines} lines; {}", sd.log());
    assert_eq!(sd.count("unable to write"), 0, "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// Review (output): sheepdog's stdout is a file on a disk that fills up
/// (here RLIMIT_FSIZE). A write the disk took in part left half a line in
/// it, and the first line written once there was room again was glued to
/// that half: one line made of two records.
#[test]
fn a_line_a_full_stdout_file_took_in_part_does_not_glue_to_the_next() {
    let dir = TempDir::new("stdout-full");
    let script = format!(
        "import os, time\n\
         def wait(f):\n    while not os.path.exists(f): time.sleep(0.01)\n\
         wait('{d}/go1')\n\
         for i in range(60): print('line-%05d %s' % (i, 'x' * 40), flush=True)\n\
         open('{d}/done1', 'w').close()\n\
         wait('{d}/go2')\n\
         print('after', flush=True)\n\
         time.sleep(100)\n",
        d = dir.0.display()
    );
    let py = dir.write("w.py", &script);
    let cfg = dir.write(
        "sheepdog.yaml",
        &config(
            "",
            &format!("  w:\n    command: [python3, {}]\n", py.display()),
        ),
    );
    let mut sd = Sheepdog::start_file("stdout-full", &cfg, |_| {});
    sd.wait_log("w-1: started");
    let out = sd.dir.path("sheepdog.log");
    let limit = |v: &str| {
        let pid = sd.pid().to_string();
        let mut cmd = std::process::Command::new("prlimit");
        cmd.args(["--pid", &pid, &format!("--fsize={v}:")]);
        let o = output_within(cmd, WAIT);
        assert!(o.status.success(), "{o:?}");
    };
    // Room for a few lines and a part of one more (each is about 94 bytes).
    let room = fs::metadata(&out).unwrap().len() + 1000;
    limit(&room.to_string());
    dir.write("go1", "");
    assert!(
        wait_until(WAIT, || dir.path("done1").exists()
            && fs::metadata(&out).is_ok_and(|m| m.len() == room)),
        "{}",
        sd.log()
    );
    limit("unlimited");
    dir.write("go2", "");
    sd.wait_log("w-1      | after");
    let text = sd.log();
    let stamps = |l: &str| l.matches("Z INFO ").count() + l.matches("Z WARN ").count();
    assert!(
        text.lines().all(|l| stamps(l) <= 1),
        "a line holds two records:\n{text}"
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}
