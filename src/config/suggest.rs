//! Did-you-mean: the closest valid word to a misspelt one.
//!
//! A candidate is suggested only when it is close enough to be a plausible
//! typo: equal after ignoring case and `-`/`_`, or within an edit distance
//! of about a third of its length (at least 1, at most 3). Ties go to the
//! first candidate in the order given, so callers pass a stable order.

/// The closest candidate to `word`, if any is close enough.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let norm = normalise(word);
    let len = norm.chars().count();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let c_len = c.chars().count();
        let limit = (c_len.max(len) / 3).clamp(1, 3);
        // The distance is at least the difference in length: a word far
        // longer than every candidate (a megabyte in an API body) costs a
        // length count, never a table of its length times theirs.
        if c_len.abs_diff(len) > limit {
            continue;
        }
        let d = if normalise(c) == norm {
            0
        } else {
            distance(&norm, &normalise(c))
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The keys other supervisors' configs use for what sheepdog calls
/// otherwise (Compose, supervisord, Kubernetes), with sheepdog's key
/// path from the same block. Too far apart for a typo's suggestion.
const KNOWN_AS: &[(&str, &str)] = &[
    ("environment", "env"),
    ("entrypoint", "command"),
    ("directory", "working_dir"),
    ("workdir", "working_dir"),
    ("working_directory", "working_dir"),
    ("replicas", "scale"),
    ("numprocs", "scale"),
    ("autostart", "initial_state"),
    ("autorestart", "restart"),
    ("restart_policy", "restart"),
    ("requires", "depends_on"),
    ("stop_signal", "shutdown.signal"),
    ("stopsignal", "shutdown.signal"),
    ("stop_grace_period", "shutdown.timeout"),
    ("stopwaitsecs", "shutdown.timeout"),
    ("healthcheck", "health_check"),
    ("liveness_probe", "health_check"),
    ("readiness_probe", "health_check"),
];

/// Another supervisor's name for a key of the block whose keys are
/// `names`: sheepdog's key path for it, when that block has it.
pub fn known_as(word: &str, names: &[&str]) -> Option<&'static str> {
    let word = normalise(word);
    KNOWN_AS
        .iter()
        .find(|(other, _)| *other == word)
        .map(|(_, ours)| *ours)
        .filter(|ours| names.contains(&ours.split('.').next().unwrap_or(ours)))
}

/// `; did you mean "x"?` or an empty string.
pub fn hint<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match closest(word, candidates) {
        Some(c) => format!("; did you mean {c:?}?"),
        None => String::new(),
    }
}

fn normalise(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent swaps).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("restart", "retsart"), 1);
    }

    #[test]
    fn suggestions() {
        let keys = ["shutdown_timeout", "restart_policy", "log_level"];
        assert_eq!(closest("shutdown_timout", keys), Some("shutdown_timeout"));
        assert_eq!(closest("shutdown-timeout", keys), Some("shutdown_timeout"));
        assert_eq!(closest("Log_Level", keys), Some("log_level"));
        assert_eq!(closest("zzz", keys), None);
        assert_eq!(closest("x", ["y"]), Some("y"));
        assert_eq!(closest("ab", ["xy"]), None);
        assert_eq!(
            hint("restrt", ["restart", "scale"]),
            "; did you mean \"restart\"?"
        );
        assert_eq!(hint("banana", ["restart"]), "");
    }
}
