//! Recent logs in memory, and live followers: the read interface behind the
//! logs API (`GET /api/v1/processes/{name}/logs`, `GET /api/v1/logs`,
//! `sheepdog ctl logs [--follow]`).
//!
//! `LogStore` keeps one ring buffer per (process, instance, stream): the
//! last `global.log_buffer_lines` records of each (sheepdog's own records
//! have their own ring, process `sheepdog`). The runs of a scheduled job
//! (`backup#12`: a process name never has a `#`) share one ring per job and
//! stream: each run is a new instance, so rings per run would grow without
//! end in a long-lived crond container. Shared as `Arc<LogStore>`;
//! every method takes `&self` and is safe from any thread.
//!
//! ```text
//! store.recent(Some("queue-default"), None, 100)   // last 100 of every instance, both streams
//! store.recent(Some("queue-default-2"), Some(Stream::Stderr), 20)  // one instance, one stream
//! store.recent(None, None, 500)                    // stack-wide
//! let sub = store.subscribe(Some("web"), None, 1024)?;  // follow: new records as they come
//! match sub.rx.recv_timeout(..) { Ok(Followed::Record(r)) => …, Ok(Followed::Dropped(n)) => … }
//! ```
//!
//! `recent` returns records oldest first, merged across buffers by arrival
//! order (`Record::seq`). A name matches a process name or an instance
//! name. A `Record` serialises (serde) to the same JSON object as the JSON
//! log format; the API adds its `seq` (`logging::WithSeq`).
//!
//! Invariants:
//! - Bounded memory: each ring holds at most `lines` records and at most
//!   `RING_BYTES` bytes of them (the oldest go first); rings are per
//!   instance of a longrun or oneshot (bounded by the scale) and per job,
//!   never per run; a reload drops those of processes removed before it
//!   (`retain`), so renames cannot pile them up; subscriber channels
//!   are bounded, in records and (roughly) in bytes; at most
//!   `MAX_SUBSCRIBERS` followers at once.
//! - `push` never blocks on a reader: the lock is held only to append and to
//!   `try_send`. A follower whose channel is full loses records and is told
//!   how many with one `Followed::Dropped(n)` before the next record it
//!   gets. A follower that went away (receiver dropped) is forgotten on the
//!   next push.
//! - Records are already redacted and filtered: the store sees exactly what
//!   was printed.
//! - `push` stamps `Record::seq`: 1, 2, … in the order records are stored,
//!   under the same lock that appends them and hands them to followers. So
//!   every ring and every follower channel is in `seq` order, and a reader
//!   that asks for records after the last `seq` it saw gets exactly the
//!   ones stored since (those still held), none twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::logging::{Record, Stream};

/// Bytes one ring may hold (records are dropped oldest first beyond it).
pub const RING_BYTES: usize = 1 << 20;
/// Followers at once.
pub const MAX_SUBSCRIBERS: usize = 64;
/// Largest follower channel.
pub const MAX_FOLLOW_CHANNEL: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    process: Arc<str>,
    instance: Option<Arc<str>>,
    stream: Option<Stream>,
}

#[derive(Debug, Default)]
struct Ring {
    records: VecDeque<Arc<Record>>,
    bytes: usize,
}

/// What a follower receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    Record(Arc<Record>),
    /// This many records were not delivered because the channel was full.
    Dropped(u64),
}

/// A live follow: read `rx` until it is disconnected (the store is gone).
pub struct Subscription {
    #[allow(dead_code)] // read by the HTTP API's follow route
    pub rx: Receiver<Followed>,
    /// Dropped with the subscription: tells the store the follower left.
    _alive: Arc<()>,
}

struct Follower {
    tx: Sender<Followed>,
    alive: Weak<()>,
    process: Option<String>,
    stream: Option<Stream>,
    dropped: u64,
}

#[derive(Default)]
struct Inner {
    rings: HashMap<Key, Ring>,
    followers: Vec<Follower>,
    /// The `seq` of the last record stored (0: none yet).
    last_seq: u64,
}

/// Recent records per instance and stream, plus live followers.
pub struct LogStore {
    lines: usize,
    ring_bytes: usize,
    inner: Mutex<Inner>,
}

fn matches(r: &Record, process: Option<&str>, stream: Option<Stream>) -> bool {
    process.is_none_or(|n| &*r.process == n || r.instance.as_deref() == Some(n))
        && stream.is_none_or(|s| r.stream == Some(s))
}

/// Whether `instance` is a run of a scheduled job (`backup#12`).
fn is_run(instance: &str) -> bool {
    instance.contains('#')
}

/// The job of a run's instance name (`backup#12` → `backup`).
fn run_of(instance: &str) -> Option<&str> {
    instance.split_once('#').map(|(job, _)| job)
}

/// Buffer memory in use (for docs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub rings: usize,
    pub records: usize,
    pub bytes: usize,
    pub followers: usize,
}

impl LogStore {
    /// `lines` per ring (`global.log_buffer_lines`; 0 keeps nothing, but
    /// followers still get records).
    pub fn new(lines: usize) -> LogStore {
        Self::with_ring_bytes(lines, RING_BYTES)
    }

    pub fn with_ring_bytes(lines: usize, ring_bytes: usize) -> LogStore {
        LogStore {
            lines,
            ring_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a ring inconsistent
        // in a way that matters for reading; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number `r`, keep it and hand it to followers. Never blocks on a
    /// reader.
    pub fn push(&self, mut r: Record) {
        let mut inner = self.lock();
        inner.last_seq += 1;
        r.seq = inner.last_seq;
        let r = Arc::new(r);
        let weight = r.weight();
        if !inner.followers.is_empty() {
            inner.followers.retain_mut(|f| {
                if !matches(&r, f.process.as_deref(), f.stream) {
                    return f.alive.strong_count() > 0;
                }
                // Bytes, not only records: a record goes in only while
                // those ahead of it times its weight stay under
                // `RING_BYTES`, so a slow reader holds a few MiB (about
                // `RING_BYTES` × ln(capacity)), not capacity × 64 KiB lines.
                if f.tx.len() * weight > RING_BYTES {
                    f.dropped += 1;
                    return f.alive.strong_count() > 0;
                }
                if f.dropped > 0 {
                    match f.tx.try_send(Followed::Dropped(f.dropped)) {
                        Ok(()) => f.dropped = 0,
                        Err(TrySendError::Full(_)) => {
                            f.dropped += 1;
                            return true;
                        }
                        Err(TrySendError::Disconnected(_)) => return false,
                    }
                }
                match f.tx.try_send(Followed::Record(r.clone())) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        f.dropped += 1;
                        true
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                }
            });
        }
        if self.lines == 0 {
            return;
        }
        let key = Key {
            process: r.process.clone(),
            // A job's runs share its ring (module header).
            instance: r.instance.clone().filter(|i| !is_run(i)),
            stream: r.stream,
        };
        let ring = inner.rings.entry(key).or_default();
        ring.bytes += weight;
        ring.records.push_back(r);
        while ring.records.len() > self.lines
            || (ring.bytes > self.ring_bytes && ring.records.len() > 1)
        {
            match ring.records.pop_front() {
                Some(old) => ring.bytes = ring.bytes.saturating_sub(old.weight()),
                None => break,
            }
        }
    }

    /// The last `limit` records matching `process` (a process or instance
    /// name; None = all, sheepdog's own included) and `stream`, oldest first.
    #[allow(dead_code)] // read by the HTTP API's logs routes
    pub fn recent(
        &self,
        process: Option<&str>,
        stream: Option<Stream>,
        limit: usize,
    ) -> Vec<Arc<Record>> {
        let inner = self.lock();
        let mut out: Vec<Arc<Record>> = Vec::new();
        for (key, ring) in &inner.rings {
            let name_ok =
                process.is_none_or(|n| &*key.process == n || key.instance.as_deref() == Some(n));
            let stream_ok = stream.is_none_or(|s| key.stream == Some(s));
            if name_ok && stream_ok {
                let skip = ring.records.len().saturating_sub(limit);
                out.extend(ring.records.iter().skip(skip).cloned());
            } else if stream_ok && process.is_some_and(|n| run_of(n) == Some(&*key.process)) {
                // One run of a job: its records in the job's ring.
                let run = ring
                    .records
                    .iter()
                    .rev()
                    .filter(|r| r.instance.as_deref() == process);
                out.extend(run.take(limit).cloned());
            }
        }
        drop(inner);
        // Oldest first, by (sequence number, index) pairs: the type
        // `config::env::longest_first` sorts, one sort in the binary for
        // both (each is 2-3 KiB of code).
        let mut order: Vec<(u64, usize)> =
            out.iter().enumerate().map(|(i, r)| (r.seq, i)).collect();
        order.sort_unstable();
        let skip = order.len().saturating_sub(limit);
        order[skip..]
            .iter()
            .map(|&(_, i)| Arc::clone(&out[i]))
            .collect()
    }

    /// Follow new records matching `process` and `stream`, through a channel
    /// of `capacity` (clamped to 1..=MAX_FOLLOW_CHANNEL). None when
    /// `MAX_SUBSCRIBERS` followers are already attached.
    #[allow(dead_code)] // used by the HTTP API's follow route
    pub fn subscribe(
        &self,
        process: Option<&str>,
        stream: Option<Stream>,
        capacity: usize,
    ) -> Option<Subscription> {
        let mut inner = self.lock();
        inner.followers.retain(|f| f.alive.strong_count() > 0);
        if inner.followers.len() >= MAX_SUBSCRIBERS {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(capacity.clamp(1, MAX_FOLLOW_CHANNEL));
        let alive = Arc::new(());
        inner.followers.push(Follower {
            tx,
            alive: Arc::downgrade(&alive),
            process: process.map(str::to_string),
            stream,
            dropped: 0,
        });
        Some(Subscription { rx, _alive: alive })
    }

    /// Drop the rings of the processes `keep` rejects, their hooks' with
    /// them (`web/hook:migrate` goes with `web`).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().rings.retain(|k, _| {
            let p = &*k.process;
            keep(p.split_once("/hook:").map_or(p, |(owner, _)| owner))
        });
    }

    /// What the buffers hold now.
    #[allow(dead_code)] // for metrics and tests
    pub fn usage(&self) -> Usage {
        let inner = self.lock();
        Usage {
            rings: inner.rings.len(),
            records: inner.rings.values().map(|r| r.records.len()).sum(),
            bytes: inner.rings.values().map(|r| r.bytes).sum(),
            followers: inner.followers.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogLevel;
    use std::time::Duration;

    fn rec(process: &str, instance: Option<&str>, stream: Option<Stream>, msg: &str) -> Record {
        let mut r = Record::new(LogLevel::Info, process.into(), msg.into());
        r.instance = instance.map(Into::into);
        r.stream = stream;
        r
    }

    fn msgs(rs: &[Arc<Record>]) -> Vec<&str> {
        rs.iter().map(|r| r.msg.as_str()).collect()
    }

    const OUT: Option<Stream> = Some(Stream::Stdout);
    const ERR: Option<Stream> = Some(Stream::Stderr);

    #[test]
    fn rings_are_bounded_per_instance_and_stream_and_merge_by_arrival() {
        let s = LogStore::new(3);
        for i in 0..5 {
            s.push(rec("web", Some("web-1"), OUT, &format!("w1 out {i}")));
            s.push(rec("web", Some("web-2"), ERR, &format!("w2 err {i}")));
        }
        s.push(rec("sheepdog", None, None, "own"));
        s.push(rec("queue", Some("queue-1"), OUT, "q"));
        assert_eq!(
            msgs(&s.recent(Some("web"), None, 10)),
            ["w1 out 2", "w2 err 2", "w1 out 3", "w2 err 3", "w1 out 4", "w2 err 4"]
        );
        assert_eq!(
            msgs(&s.recent(Some("web"), None, 2)),
            ["w1 out 4", "w2 err 4"]
        );
        assert_eq!(
            msgs(&s.recent(Some("web-2"), None, 2)),
            ["w2 err 3", "w2 err 4"]
        );
        assert_eq!(msgs(&s.recent(Some("web"), OUT, 1)), ["w1 out 4"]);
        assert_eq!(msgs(&s.recent(None, None, 3)), ["w2 err 4", "own", "q"]);
        assert_eq!(msgs(&s.recent(Some("sheepdog"), None, 9)), ["own"]);
        assert!(s.recent(Some("nope"), None, 9).is_empty());
        let u = s.usage();
        assert_eq!((u.rings, u.records), (4, 8));
    }

    #[test]
    fn retain_drops_a_process_with_its_hooks_and_keeps_the_rest() {
        let s = LogStore::new(3);
        for (process, instance) in [
            ("web", Some("web-1")),
            ("web/hook:migrate", Some("web/hook:migrate")),
            ("webhook", Some("webhook-1")),
            ("hook:bye", Some("hook:bye")),
            ("sheepdog", None),
        ] {
            s.push(rec(process, instance, OUT, process));
        }
        s.retain(|p| p != "web");
        assert_eq!(
            msgs(&s.recent(None, None, 9)),
            ["webhook", "hook:bye", "sheepdog"]
        );
        assert_eq!(s.usage().rings, 3);
    }

    fn seqs(rs: &[Arc<Record>]) -> Vec<u64> {
        rs.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn push_numbers_records_in_store_order_from_1() {
        let s = LogStore::new(10);
        let sub = s.subscribe(None, None, 100).unwrap();
        // Made in one order, stored in another (as two threads may do):
        // the store's order is the one that counts.
        let first = rec("a", Some("a-1"), OUT, "made first");
        let second = rec("b", Some("b-1"), ERR, "made second");
        s.push(second);
        s.push(first);
        s.push(rec("sheepdog", None, None, "own"));
        let all = s.recent(None, None, 10);
        assert_eq!(seqs(&all), [1, 2, 3]);
        assert_eq!(msgs(&all), ["made second", "made first", "own"]);
        let followed: Vec<u64> = sub
            .rx
            .try_iter()
            .filter_map(|f| match f {
                Followed::Record(r) => Some(r.seq),
                Followed::Dropped(_) => None,
            })
            .collect();
        assert_eq!(followed, [1, 2, 3]);
        // Records kept nowhere are numbered too: followers may see them.
        let none = LogStore::new(0);
        none.push(rec("a", None, None, "x"));
        none.push(rec("a", None, None, "y"));
        assert_eq!(none.lock().last_seq, 2);
    }

    #[test]
    fn seqs_are_unique_and_ordered_with_many_writers() {
        let s = Arc::new(LogStore::new(1000));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        s.push(rec("w", Some(&format!("w-{t}")), OUT, &i.to_string()));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(
            seqs(&s.recent(None, None, 1000)),
            (1..=400).collect::<Vec<_>>()
        );
        // Each instance's ring is in its own push order.
        let w0 = s.recent(Some("w-0"), None, 1000);
        let expect: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(msgs(&w0), expect);
    }

    #[test]
    fn a_jobs_runs_share_one_ring_and_each_run_can_still_be_read() {
        let store = LogStore::new(3);
        for run in 1..=1000 {
            let id = format!("backup#{run}");
            store.push(rec(
                "backup",
                Some(&id),
                Some(Stream::Stdout),
                &format!("run {run}"),
            ));
        }
        // Not a ring per run: memory does not grow with the runs.
        assert_eq!(store.usage().rings, 1);
        let job = store.recent(Some("backup"), None, 10);
        assert_eq!(msgs(&job), ["run 998", "run 999", "run 1000"]);
        let one = store.recent(Some("backup#999"), None, 10);
        assert_eq!(msgs(&one), ["run 999"]);
        assert!(store.recent(Some("backup#5"), None, 10).is_empty());
        assert!(store.recent(Some("other#999"), None, 10).is_empty());
    }

    #[test]
    fn rings_are_bounded_in_bytes_too() {
        let s = LogStore::with_ring_bytes(1000, 4096);
        let big = "x".repeat(1000);
        for _ in 0..100 {
            s.push(rec("a", Some("a-1"), OUT, &big));
        }
        let u = s.usage();
        assert!(u.bytes <= 4096, "{u:?}");
        assert!(u.records >= 2 && u.records < 5, "{u:?}");
        // A single record larger than the cap is still kept (the newest).
        s.push(rec("a", Some("a-1"), OUT, &"y".repeat(10_000)));
        assert_eq!(s.recent(Some("a"), None, 10).len(), 1);
    }

    #[test]
    fn zero_lines_keeps_nothing_but_followers_still_get_records() {
        let s = LogStore::new(0);
        let sub = s.subscribe(None, None, 4).unwrap();
        s.push(rec("a", Some("a-1"), OUT, "x"));
        assert!(s.recent(None, None, 10).is_empty());
        assert!(matches!(sub.rx.try_recv(), Ok(Followed::Record(r)) if r.msg == "x"));
    }

    #[test]
    fn followers_get_new_matching_records_and_slow_ones_are_told_what_they_lost() {
        let s = LogStore::new(10);
        s.push(rec("web", Some("web-1"), OUT, "before"));
        let web = s.subscribe(Some("web"), None, 2).unwrap();
        let errs = s.subscribe(None, ERR, 100).unwrap();
        for i in 0..5 {
            s.push(rec("web", Some("web-1"), OUT, &format!("l{i}")));
        }
        s.push(rec("db", Some("db-1"), ERR, "db err"));
        // Channel of 2: l0, l1 delivered; l2..l4 dropped (3).
        let got: Vec<Followed> = web.rx.try_iter().collect();
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Followed::Record(r) if r.msg == "l0"));
        s.push(rec("web", Some("web-1"), OUT, "l5"));
        let got: Vec<Followed> = web.rx.try_iter().collect();
        assert_eq!(got[0], Followed::Dropped(3));
        assert!(matches!(&got[1], Followed::Record(r) if r.msg == "l5"));
        let got: Vec<Followed> = errs.rx.try_iter().collect();
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Followed::Record(r) if r.msg == "db err"));
        // A follower that goes away is forgotten; push never blocks.
        drop(web);
        s.push(rec("web", Some("web-1"), OUT, "after"));
        assert_eq!(s.usage().followers, 1);
        // Follow from another thread with a bounded wait.
        let s = Arc::new(s);
        let sub = s.subscribe(Some("web-1"), None, 8).unwrap();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.push(rec("web", Some("web-1"), OUT, "live")));
        let got = sub.rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(matches!(got, Followed::Record(r) if r.msg == "live"));
        t.join().unwrap();
    }

    /// Review (logs): a follower that reads at a trickle held its whole
    /// channel, 1,024 records: 64 MiB of 64 KiB lines (RSS 10 → 76 MB).
    #[test]
    fn a_slow_follower_holds_a_few_mib_however_long_the_lines() {
        let s = LogStore::new(10);
        let sub = s.subscribe(None, None, 1024).unwrap();
        let big = "z".repeat(64 * 1024);
        for _ in 0..300 {
            s.push(rec("a", Some("a-1"), OUT, &big));
        }
        let held: usize = sub
            .rx
            .try_iter()
            .map(|f| match f {
                Followed::Record(r) => r.weight(),
                Followed::Dropped(_) => 0,
            })
            .sum();
        assert!(held > 0 && held <= 2 * RING_BYTES, "{held} bytes held");
        s.push(rec("a", Some("a-1"), OUT, "small"));
        assert!(matches!(sub.rx.try_recv(), Ok(Followed::Dropped(n)) if n > 250));
        // Ordinary lines still fill the channel to its capacity.
        for i in 0..1100 {
            s.push(rec("a", Some("a-1"), OUT, &format!("line {i}")));
        }
        assert_eq!(sub.rx.len(), 1024);
    }

    #[test]
    fn followers_are_limited() {
        let s = LogStore::new(1);
        let subs: Vec<Subscription> = (0..MAX_SUBSCRIBERS)
            .map(|_| s.subscribe(None, None, 1).unwrap())
            .collect();
        assert!(s.subscribe(None, None, 1).is_none());
        drop(subs);
        assert!(s.subscribe(None, None, 1).is_some());
    }
}
