//! The logs endpoints: `GET /api/v1/logs` (stack-wide) and
//! `GET /api/v1/processes/{name}/logs`, read from the `LogStore` ring
//! buffers, and `POST /api/v1/logs/reopen` (what SIGUSR1 does).
//!
//! Query: `limit` (default 100, at most 10,000), `stream` (`stdout` or
//! `stderr`), `since` (only records with a larger `seq`), `wait` (seconds,
//! at most 25: when nothing newer than `since` exists yet, wait that long
//! for the first new record — a long poll, which is how `sheepdog ctl logs
//! --follow` follows).
//!
//! Each record is the JSON log line's object with the record's `seq` first
//! (`logging::WithSeq`); `next_since` is the last one's `seq`, to pass back
//! as `since`.
//!
//! `follow=true` streams instead: newline-delimited JSON records from now
//! on (chunked for HTTP/1.1, until close for HTTP/1.0), with an empty
//! keep-alive line every `KEEPALIVE`, until the client goes away.
//!
//! Invariants:
//! - A waiting request blocks only its own worker, on a `LogStore`
//!   subscription (no polling), and never past `wait`; at most
//!   `MAX_WAITERS` wait at once (`trigger?wait=true` shares the slots,
//!   `take_slot`), so waiters can never take every worker: beyond that a
//!   long poll answers at once with what there is, a follower gets 503.
//! - Every bad parameter is a 400 naming it.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::logging::{Record, Stream, WithSeq};
use crate::output::buffer::{Followed, LogStore};
use crate::status::Snapshot;

use super::http::{query_bool, query_pairs, Response};

/// Requests allowed to wait, follow or wait for a triggered run at once:
/// fewer than the API's workers (checked in `api`), so one is always free.
pub(super) const MAX_WAITERS: usize = 2;
/// A follower gets an empty line this often, so a client that went away is
/// noticed (the write fails) and its worker freed.
const KEEPALIVE: Duration = Duration::from_secs(5);
const MAX_WAIT: Duration = Duration::from_secs(25);
const MAX_LIMIT: usize = 10_000;

static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// The 503 when no slot is free (a follower, a waited-for trigger).
pub(super) fn busy() -> Response {
    let msg = format!(
        "too many requests waiting (logs follow and wait, trigger?wait=true share \
         {MAX_WAITERS} slots); try again later"
    );
    Response::error(503, &msg).with_header("Retry-After", "5")
}

/// Take one of the `MAX_WAITERS` slots; false when none is free.
/// `give_slot` returns it.
pub(super) fn take_slot() -> bool {
    if WAITERS.fetch_add(1, Ordering::SeqCst) >= MAX_WAITERS {
        give_slot();
        return false;
    }
    true
}

pub(super) fn give_slot() {
    WAITERS.fetch_sub(1, Ordering::SeqCst);
}

/// Parsed query.
#[derive(Debug, Clone, PartialEq)]
struct Query {
    limit: usize,
    stream: Option<Stream>,
    since: Option<u64>,
    wait: Duration,
    follow: bool,
}

fn parse(query: &str) -> Result<Query, String> {
    let mut q = Query {
        limit: 100,
        stream: None,
        since: None,
        wait: Duration::ZERO,
        follow: false,
    };
    // A repeated parameter is refused, not read as its last value.
    let mut seen = 0u8;
    for (k, v) in query_pairs(query) {
        let bit = match k.as_str() {
            "limit" => 1,
            "stream" => 2,
            "since" => 4,
            "wait" => 8,
            "follow" => 16,
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; expected limit, stream, since, wait or follow"
                ))
            }
        };
        if seen & bit != 0 {
            return Err(format!("{k}: given twice; expected it once"));
        }
        seen |= bit;
        let flag = v.as_deref();
        let v = flag.unwrap_or_default();
        match bit {
            1 => {
                q.limit = digits(v)
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("limit: invalid value {v:?}; expected 1 to {MAX_LIMIT}")
                    })?;
            }
            2 => {
                q.stream = Some(Stream::parse(v).ok_or_else(|| {
                    format!("stream: invalid value {v:?}; expected stdout or stderr")
                })?);
            }
            4 => {
                q.since =
                    Some(digits(v).ok_or_else(|| {
                        format!("since: invalid value {v:?}; expected a record seq")
                    })?);
            }
            8 => {
                let secs: u64 = digits(v)
                    .filter(|s| Duration::from_secs(*s) <= MAX_WAIT)
                    .ok_or_else(|| {
                        format!(
                            "wait: invalid value {v:?}; expected 0 to {} seconds",
                            MAX_WAIT.as_secs()
                        )
                    })?;
                q.wait = Duration::from_secs(secs);
            }
            _ => q.follow = query_bool("follow", flag)?,
        }
    }
    Ok(q)
}

/// A number in plain digits: `parse` alone would take `+5`.
fn digits<T: std::str::FromStr>(v: &str) -> Option<T> {
    v.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v.parse().ok())?
}

/// `GET /api/v1/logs` (`name` None) or `/api/v1/processes/{name}/logs`.
pub fn get(
    store: &LogStore,
    snap: &Snapshot,
    name: Option<&str>,
    query: &str,
    head_only: bool,
) -> Response {
    let q = match parse(query) {
        Ok(q) => q,
        Err(e) => return Response::error(400, &e),
    };
    if let Some(n) = name {
        // `sheepdog` names sheepdog's own records; `backup#12` a run of a
        // scheduled job (its records stay in the job's buffer).
        let run_of = |job: &str| {
            n.strip_prefix(job)
                .and_then(|r| r.strip_prefix('#'))
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        };
        let known = n == "sheepdog"
            || snap.processes.iter().any(|p| {
                *p.name == *n
                    || p.instances.iter().any(|i| *i.id == *n)
                    || (p.schedule.is_some() && run_of(&p.name))
            });
        // A scaled-down instance or a removed process: its lines while the
        // buffer holds them.
        if !known && store.recent(name, None, 1).is_empty() {
            return Response::error(404, &format!("no process or instance named {n:?}"));
        }
    }
    if q.follow {
        // HEAD: the stream's head, with no body, so no slot. Else the slot
        // is given back when the stream ends (`follow`), or when its head
        // cannot be written (`Handler::unstreamed`).
        if !head_only && !take_slot() {
            return busy();
        }
        return Response::stream("application/x-ndjson");
    }
    let mut records = newer(store, name, &q);
    if records.is_empty() && !q.wait.is_zero() {
        records = wait_for(store, name, &q);
    }
    let next = records.last().map(|r| r.seq).or(q.since);
    // Written by hand rather than through a `Value`, whose map would sort
    // each record's keys: a record reads as the same object as a JSON log
    // line (and a follow stream's), `seq` first.
    let mut body = b"{\"records\":[".to_vec();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        // Writing to a Vec fails only on a serializer error; a record is
        // plain strings and numbers.
        let _ = serde_json::to_writer(&mut body, &WithSeq(r));
    }
    let next = next.map_or_else(|| "null".to_string(), |n| n.to_string());
    body.extend_from_slice(format!("],\"next_since\":{next}}}\n").as_bytes());
    Response::text(200, super::http::JSON, body)
}

fn newer(store: &LogStore, name: Option<&str>, q: &Query) -> Vec<Arc<Record>> {
    let mut all = store.recent(name, q.stream, q.limit);
    if let Some(since) = q.since {
        all.retain(|r| r.seq > since);
    }
    all
}

/// Stream new records to `out` until a write fails (the client left, or
/// stopped reading for longer than the write timeout). `get` took a slot.
pub fn follow(
    store: &LogStore,
    name: Option<&str>,
    query: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let result = (|| {
        let q = parse(query).map_err(std::io::Error::other)?;
        // Subscribe before reading the backlog, so nothing falls between.
        let sub = store
            .subscribe(name, q.stream, 1024)
            .ok_or_else(|| std::io::Error::other("too many followers"))?;
        // The store numbers records from 1 in the order it hands them out,
        // so anything at or below `last` was sent already (the backlog and
        // the subscription overlap) or was asked to be skipped (`since`).
        let mut last = q.since.unwrap_or(0);
        let mut send = |r: &Record, out: &mut dyn Write| -> std::io::Result<()> {
            if r.seq <= last {
                return Ok(());
            }
            last = r.seq;
            let mut line = serde_json::to_vec(&WithSeq(r)).unwrap_or_default();
            line.push(b'\n');
            out.write_all(&line)
        };
        if q.since.is_some() {
            for r in newer(store, name, &q) {
                send(&r, out)?;
            }
        }
        loop {
            match sub.rx.recv_timeout(KEEPALIVE) {
                Ok(Followed::Record(r)) => send(&r, out)?,
                Ok(Followed::Dropped(n)) => {
                    out.write_all(format!("{}\n", json!({ "dropped": n })).as_bytes())?;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => out.write_all(b"\n")?,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    })();
    give_slot();
    result
}

/// Long poll: wait (bounded) for the first record newer than `since`.
fn wait_for(store: &LogStore, name: Option<&str>, q: &Query) -> Vec<Arc<Record>> {
    if !take_slot() {
        return Vec::new();
    }
    let result = (|| {
        let sub = store.subscribe(name, q.stream, q.limit)?;
        // A record may have arrived between `newer` and `subscribe`.
        let again = newer(store, name, q);
        if !again.is_empty() {
            return Some(again);
        }
        let deadline = Instant::now() + q.wait;
        let mut got = Vec::new();
        while got.is_empty() {
            match sub.rx.recv_deadline(deadline) {
                Ok(Followed::Record(r)) => got.push(r),
                Ok(Followed::Dropped(_)) => {}
                Err(_) => break,
            }
        }
        // Take whatever else is already queued, without waiting.
        while got.len() < q.limit {
            match sub.rx.try_recv() {
                Ok(Followed::Record(r)) => got.push(r),
                Ok(Followed::Dropped(_)) => {}
                Err(_) => break,
            }
        }
        Some(got)
    })();
    give_slot();
    result.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogLevel;

    fn store_of(n: usize) -> LogStore {
        let store = LogStore::new(100);
        for i in 1..=n {
            let mut r = Record::new(LogLevel::Info, "web".into(), format!("line {i}"));
            r.instance = Some("web-1".into());
            r.stream = Some(Stream::Stdout);
            store.push(r);
        }
        store
    }

    fn answer(store: &LogStore, query: &str) -> (Vec<u64>, serde_json::Value) {
        let r = get(store, &Snapshot::default(), None, query, false);
        assert_eq!(r.status, 200);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let seqs = body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        (seqs, body["next_since"].clone())
    }

    #[test]
    fn records_carry_their_seq_and_since_resumes_after_it() {
        let store = store_of(3);
        assert_eq!(answer(&store, ""), (vec![1, 2, 3], json!(3)));
        assert_eq!(answer(&store, "limit=1"), (vec![3], json!(3)));
        assert_eq!(answer(&store, "since=1"), (vec![2, 3], json!(3)));
        assert_eq!(answer(&store, "since=3"), (vec![], json!(3)));
        assert_eq!(answer(&LogStore::new(9), ""), (vec![], json!(null)));
    }

    /// Takes `n` lines, then fails like a client that went away.
    struct Client {
        lines: Vec<serde_json::Value>,
        n: usize,
    }

    impl Write for Client {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                self.lines.push(serde_json::from_slice(line).unwrap());
            }
            if self.lines.len() >= self.n {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn follow_sends_the_backlog_after_since_then_live_records_each_once() {
        let store = Arc::new(store_of(5));
        let live = store.clone();
        // Stored before or after `follow` subscribes: either way exactly once.
        let writer = std::thread::spawn(move || {
            let mut r = Record::new(LogLevel::Info, "web".into(), "live".into());
            r.instance = Some("web-1".into());
            live.push(r);
        });
        let mut client = Client {
            lines: Vec::new(),
            n: 4,
        };
        // `get` takes the slot that `follow` gives back.
        WAITERS.fetch_add(1, Ordering::SeqCst);
        let ended = follow(&store, Some("web"), "follow=true&since=2", &mut client);
        writer.join().unwrap();
        assert!(ended.is_err());
        let seqs: Vec<u64> = client
            .lines
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(client.lines[3]["msg"], "live");
    }

    #[test]
    fn queries_parse_or_name_the_bad_parameter() {
        assert_eq!(
            parse("").unwrap(),
            Query {
                limit: 100,
                stream: None,
                since: None,
                wait: Duration::ZERO,
                follow: false,
            }
        );
        assert!(parse("follow=true").unwrap().follow);
        // Booleans read as a trigger's `wait`; names and values decoded.
        assert!(parse("follow").unwrap().follow);
        assert!(parse("follow=yes").unwrap().follow);
        let q = parse("%6cimit=%31&stream=std%6fut").unwrap();
        assert_eq!((q.limit, q.stream), (1, Some(Stream::Stdout)));
        let q = parse("limit=5&stream=stderr&since=42&wait=3").unwrap();
        assert_eq!(
            (q.limit, q.stream, q.since, q.wait),
            (5, Some(Stream::Stderr), Some(42), Duration::from_secs(3))
        );
        for (bad, key) in [
            ("limit=0", "limit"),
            ("limit=x", "limit"),
            ("stream=both", "stream"),
            ("since=-1", "since"),
            ("wait=99", "wait"),
            ("follow=maybe", "follow"),
            ("follow=", "follow"),
            ("limit=+1", "limit"),
            ("since=+5", "since"),
            ("wait=+1", "wait"),
            ("limit=1&li%6dit=2", "limit: given twice"),
            ("tail=3", "tail"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
