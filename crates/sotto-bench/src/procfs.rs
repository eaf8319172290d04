//! CPU and memory of the server and of the bench, sampled from `/proc`.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` (in clock ticks, see
//! `getconf CLK_TCK`); memory is `VmRSS` from `/proc/PID/status`. A
//! [`Sampler`] reads both every 250 ms during a measured phase and keeps the
//! largest RSS; CPU% is the tick difference over the phase's wall time, so
//! 200% means both cores of this machine were busy.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// How often the sampler reads `/proc`.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// Parses `utime + stime` (clock ticks) out of a `/proc/PID/stat` line. The
/// command name may contain spaces and parentheses, so fields are counted
/// after the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": state(3) ppid(4) ... utime(14) stime(15); index 0 is field 3.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Parses `VmRSS` (KiB) out of `/proc/PID/status`.
pub fn parse_status_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second, from `getconf CLK_TCK` (100 if that fails).
pub fn clock_ticks() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A process to watch: `None` is the bench itself.
fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    }
}

/// CPU ticks used so far by a process, if it exists.
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{}/stat", proc_dir(pid))).ok()?;
    parse_stat_ticks(&text)
}

/// Current RSS of a process in KiB, if it exists.
pub fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{}/status", proc_dir(pid))).ok()?;
    parse_status_rss_kb(&text)
}

/// CPU ticks summed over processes (the bench and its workers).
fn sum_ticks(pids: &[Option<u32>]) -> Option<u64> {
    pids.iter().map(|&p| cpu_ticks(p)).sum()
}

/// The processes sampled besides the bench: the server (a cluster's
/// nodes), and a cluster's database and bus.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub server: Vec<u32>,
    pub db: Vec<u32>,
    pub bus: Vec<u32>,
}

/// CPU ticks summed over `pids` (none: unknown).
fn ticks_of(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    Some(pids.iter().filter_map(|p| cpu_ticks(Some(*p))).sum())
}

impl Watched {
    /// The server's RSS (summed over a cluster's nodes), KiB.
    pub fn server_rss_kb(&self) -> Option<u64> {
        if self.server.is_empty() {
            return None;
        }
        Some(self.server.iter().filter_map(|p| rss_kb(Some(*p))).sum())
    }
}

/// What a sampler measured over one phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Server CPU (summed over a cluster's nodes), percent of one core (up
    /// to 200 on 2 cores).
    pub server_cpu_pct: Option<f64>,
    /// Largest server RSS seen (summed over nodes), KiB.
    pub server_rss_kb_max: Option<u64>,
    /// Bench CPU (all its processes), percent of one core.
    pub bench_cpu_pct: Option<f64>,
    /// A cluster's database CPU, percent of one core.
    pub db_cpu_pct: Option<f64>,
    /// A cluster's bus CPU, percent of one core.
    pub bus_cpu_pct: Option<f64>,
}

/// Samples the server and the bench in the background.
#[derive(Debug)]
pub struct Sampler {
    /// The periodic RSS reader; aborted by [`Sampler::finish`].
    task: JoinHandle<()>,
    /// Largest server RSS seen so far.
    max_rss: Arc<Mutex<Option<u64>>>,
    /// CPU ticks at the start: server, database, bus.
    starts: [Option<u64>; 3],
    /// Bench CPU ticks at the start.
    bench_start: Option<u64>,
    watched: Watched,
    /// The bench's processes (`None` is this process).
    bench: Vec<Option<u32>>,
    /// When sampling started.
    started: Instant,
}

impl Sampler {
    /// Starts sampling the watched processes and the bench's.
    pub fn start(watched: &Watched, bench: Vec<Option<u32>>) -> Self {
        let max_rss = Arc::new(Mutex::new(watched.server_rss_kb()));
        let slot = max_rss.clone();
        let sampled = watched.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            // Bounded by the phase: `finish` aborts this task.
            loop {
                tick.tick().await;
                if let Some(rss) = sampled.server_rss_kb() {
                    let mut max = slot.lock().unwrap_or_else(PoisonError::into_inner);
                    *max = Some(max.map_or(rss, |m| m.max(rss)));
                }
            }
        });
        Self {
            task,
            max_rss,
            starts: [
                ticks_of(&watched.server),
                ticks_of(&watched.db),
                ticks_of(&watched.bus),
            ],
            bench_start: sum_ticks(&bench),
            watched: watched.clone(),
            bench,
            started: Instant::now(),
        }
    }

    /// Stops sampling and computes the phase's usage.
    pub fn finish(self) -> Usage {
        self.task.abort();
        let wall = self.started.elapsed().as_secs_f64().max(1e-3);
        let tck = clock_ticks() as f64;
        let pct = |start: Option<u64>, end: Option<u64>| {
            Some(end?.saturating_sub(start?) as f64 / tck / wall * 100.0)
        };
        let bench_end = sum_ticks(&self.bench);
        let mut max_rss = *self.max_rss.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rss) = self.watched.server_rss_kb() {
            max_rss = Some(max_rss.map_or(rss, |m| m.max(rss)));
        }
        let [server, db, bus] = self.starts;
        Usage {
            server_cpu_pct: pct(server, ticks_of(&self.watched.server)),
            server_rss_kb_max: max_rss,
            bench_cpu_pct: pct(self.bench_start, bench_end),
            db_cpu_pct: pct(db, ticks_of(&self.watched.db)),
            bus_cpu_pct: pct(bus, ticks_of(&self.watched.bus)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line() {
        let stat = "1234 (sotto (x) y) S 1 1234 1234 0 -1 4194560 5000 0 0 0 \
                    250 75 0 0 20 0 9 0 100 200000000 5000 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn status_rss() {
        let status = "Name:\tsotto\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss_kb(status), Some(51234));
        assert_eq!(parse_status_rss_kb("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(cpu_ticks(None).is_some());
        assert!(rss_kb(None).is_some_and(|kb| kb > 0));
        assert!(clock_ticks() > 0);
    }
}
