//! Latency histograms and the results table.
//!
//! Latencies are recorded in microseconds into a few sharded hdrhistograms
//! (clients record a whole read burst under one lock), merged at the end.
//! A [`Report`] is an ordered list of results, printed as a human table on
//! stdout and, with `--json`, as one JSON object on the last line.

use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::procfs::Usage;

/// Keys every JSON report has (`null` where a scenario has no such figure),
/// so scripts can read any report the same way.
pub const STANDARD_KEYS: &[&str] = &[
    "scenario",
    "protocol",
    "server",
    "clients",
    "senders",
    "duration_s",
    "messages_sent",
    "deliveries",
    "deliveries_per_s",
    "latency_us",
    "lost",
    "duplicated",
    "join_time_s",
    "server_cpu_pct",
    "server_rss_kb_max",
    "bench_cpu_pct",
];

/// Number of histogram shards (clients pick one by index).
const SHARDS: usize = 16;

/// Largest latency recorded, in microseconds (longer ones are clamped).
const MAX_LATENCY_US: u64 = 600_000_000;

/// Sharded latency histograms, in microseconds.
#[derive(Debug)]
pub struct Latencies {
    /// One histogram per shard, each behind its own lock.
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latencies {
    /// Empty histograms (1 µs to 10 min, 3 significant digits).
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let shards = (0..SHARDS)
            .map(|_| Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self { shards }))
    }

    /// Records a batch of latencies (µs) into shard `key % SHARDS`.
    pub fn record(&self, key: usize, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut h = self.shards[key % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &v in values {
            h.saturating_record(v.clamp(1, MAX_LATENCY_US));
        }
    }

    /// The percentiles over all shards.
    pub fn summary(&self) -> LatencySummary {
        let mut all: Option<Histogram<u64>> = None;
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(PoisonError::into_inner);
            match &mut all {
                None => all = Some(h.clone()),
                // Same bounds everywhere, so adding cannot fail.
                Some(a) => {
                    let _ = a.add(&*h);
                }
            }
        }
        all.map(|h| LatencySummary::of(&h)).unwrap_or_default()
    }
}

/// p50, p99 and max of a latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl LatencySummary {
    /// Summarizes a histogram (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }

    /// `{p50, p99, max}` in JSON, `null` when nothing was measured.
    pub fn to_json(self) -> Value {
        if self.count == 0 {
            return Value::Null;
        }
        json!({"p50": self.p50, "p99": self.p99, "max": self.max})
    }
}

/// Results of one scenario run, in display order.
#[derive(Debug)]
pub struct Report {
    /// What ran, for the table's title.
    title: String,
    /// `(json key, human label, value)`.
    fields: Vec<(String, String, Value)>,
}

impl Report {
    /// A report for `scenario` against `protocol` server `server`.
    pub fn new(scenario: &str, protocol: &str, server: &str) -> Self {
        let mut report = Self {
            title: format!("sotto-bench {scenario} against {protocol} at {server}"),
            fields: Vec::new(),
        };
        report.add("scenario", "scenario", scenario);
        report.add("protocol", "protocol", protocol);
        report.add("server", "server", server);
        report
    }

    /// Appends a result.
    pub fn add(&mut self, key: &str, label: &str, value: impl Into<Value>) {
        self.fields.push((key.into(), label.into(), value.into()));
    }

    /// Appends an optional result (`null` / `n/a` when absent).
    pub fn add_opt<T: Into<Value>>(&mut self, key: &str, label: &str, value: Option<T>) {
        self.add(key, label, value.map_or(Value::Null, Into::into));
    }

    /// Appends a latency summary under `key`.
    pub fn add_latency(&mut self, key: &str, label: &str, summary: LatencySummary) {
        self.add(key, label, summary.to_json());
    }

    /// Appends server and bench CPU/RSS with the given key and label prefixes.
    pub fn add_usage(&mut self, prefix: &str, label: &str, usage: Usage) {
        let round = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
        self.add_opt(
            &format!("{prefix}server_cpu_pct"),
            &format!("{label}server CPU % (200 = 2 cores)"),
            round(usage.server_cpu_pct),
        );
        self.add_opt(
            &format!("{prefix}server_rss_kb_max"),
            &format!("{label}server max RSS (KiB)"),
            usage.server_rss_kb_max,
        );
        self.add_opt(
            &format!("{prefix}bench_cpu_pct"),
            &format!("{label}bench CPU %"),
            round(usage.bench_cpu_pct),
        );
        self.add_opt(
            &format!("{prefix}db_cpu_pct"),
            &format!("{label}database CPU %"),
            round(usage.db_cpu_pct),
        );
        self.add_opt(
            &format!("{prefix}bus_cpu_pct"),
            &format!("{label}bus CPU %"),
            round(usage.bus_cpu_pct),
        );
    }

    /// The JSON object.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (key, _, value) in &self.fields {
            map.insert(key.clone(), value.clone());
        }
        for key in STANDARD_KEYS {
            map.entry(*key).or_insert(Value::Null);
        }
        Value::Object(map)
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let width = self.fields.iter().map(|f| f.1.len()).max().unwrap_or(0);
        let mut out = format!(
            "{}\n(bench and server share the same 2 cores)\n",
            self.title
        );
        for (_, label, value) in &self.fields {
            out.push_str(&format!("  {label:<width$}  {}\n", human(value)));
        }
        out
    }

    /// Prints the table, then the JSON line if asked.
    pub fn print(&self, json: bool) {
        print!("{}", self.to_table());
        if json {
            println!("{}", self.to_json());
        }
    }
}

/// A value as shown in the table.
fn human(value: &Value) -> String {
    match value {
        Value::Null => "n/a".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        // Latencies read best as p50, p99, max (JSON maps sort keys).
        Value::Object(map) if map.contains_key("p50") => ["p50", "p99", "max"]
            .iter()
            .map(|k| format!("{k} {}", map.get(*k).map_or("n/a".into(), human)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", human(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_sharded_histograms() {
        let lat = Latencies::new().unwrap();
        let values: Vec<u64> = (1..=1000).collect();
        lat.record(0, &values[..500]);
        lat.record(7, &values[500..]);
        lat.record(3, &[]);
        let s = lat.summary();
        assert_eq!(s.count, 1000);
        assert!((495..=505).contains(&s.p50), "{s:?}");
        assert!((985..=995).contains(&s.p99), "{s:?}");
        assert!((1000..=1001).contains(&s.max), "{s:?}");
        assert_eq!(
            s.to_json(),
            json!({"p50": s.p50, "p99": s.p99, "max": s.max})
        );
        assert_eq!(Latencies::new().unwrap().summary().to_json(), Value::Null);
    }

    #[test]
    fn table_and_json() {
        let mut r = Report::new("fanout", "sotto", "127.0.0.1:7443");
        r.add("deliveries_per_s", "deliveries/s", 1234.5678);
        r.add("lost", "lost", 0);
        r.add_opt::<u64>("server_rss_kb_max", "server max RSS (KiB)", None);
        r.add_latency(
            "latency_us",
            "latency (µs)",
            LatencySummary {
                count: 1,
                p50: 10,
                p99: 20,
                max: 30,
            },
        );
        let table = r.to_table();
        assert!(table.contains("bench and server share the same 2 cores"));
        assert!(table.contains("1234.57"));
        assert!(table.contains("n/a"));
        assert!(table.contains("p50 10, p99 20, max 30"));
        let j = r.to_json();
        assert_eq!(j["scenario"], "fanout");
        assert_eq!(j["latency_us"]["p99"], 20);
        assert_eq!(j["server_rss_kb_max"], Value::Null);
        for key in STANDARD_KEYS {
            assert!(j.get(*key).is_some(), "{key} missing");
        }
    }
}
