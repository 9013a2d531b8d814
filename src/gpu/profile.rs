//! Timings of the GPU work, by kernel and by phase.
//!
//! With profiling on ([`Context::set_profiling`](crate::Context::set_profiling),
//! or the environment variable `RNN_WGPU_PROFILE=1` when the context opens),
//! every dispatch's compute pass writes timestamps at its start and end where the
//! adapter has `TIMESTAMP_QUERY`; a submit then waits for the device and adds
//! each dispatch's time to its kernel (the dispatch label, `op::entry`) and to
//! the phase it was recorded under ([`Recorder::phase`](crate::Recorder::phase)).
//! Without timestamps, each submit's wall time (submit to idle) is counted
//! under the recorder's label instead. Profiled submits are synchronous, so
//! profile a run to learn where the time goes, not to time the run itself.
//! With `RNN_WGPU_PROFILE` set, the table is printed to standard error when the
//! last handle on the context is dropped (at the end of any example).

use std::collections::BTreeMap;
use std::fmt;

/// Where the times come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// Timestamps written by the GPU at the start and end of each dispatch.
    Timestamps,
    /// Wall time of whole submits, measured on the host.
    Host,
}

/// One line of a [`Profile`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub calls: u64,
    /// Total time in nanoseconds.
    pub total_ns: u64,
}

impl Row {
    /// Mean time per call in microseconds.
    pub fn mean_us(&self) -> f64 {
        self.total_ns as f64 / self.calls.max(1) as f64 / 1e3
    }
}

/// Accumulated timings, slowest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub timing: Timing,
    /// By dispatch label (`gemm::forward_tex`, `lstm_cell::backward`, ...), or by
    /// recorder label with [`Timing::Host`].
    pub kernels: Vec<Row>,
    /// By phase (input GEMM, recurrent step, cell, ...).
    pub phases: Vec<Row>,
    /// Host wall time of the profiled submits, from submit to idle, in
    /// nanoseconds: what the timestamps are a part of. Where it is far above
    /// the timestamps' total, the device spends its time between dispatches
    /// (barriers, layout changes, driver work), which no kernel row shows.
    pub wall_ns: u64,
}

impl Profile {
    /// Total time over all kernels, in milliseconds.
    pub fn total_ms(&self) -> f64 {
        self.kernels.iter().map(|r| r.total_ns as f64).sum::<f64>() / 1e6
    }

    /// The table as text (also what `Display` writes).
    pub fn table(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_ms().max(1e-9);
        let source = match self.timing {
            Timing::Timestamps => "GPU timestamps",
            Timing::Host => "host wall time of submits",
        };
        let wall = self.wall_ns as f64 / 1e6;
        write!(f, "GPU time by phase ({source}), {total:.1} ms in all")?;
        // A page has no host wall time to set the timestamps against.
        if self.wall_ns > 0 {
            write!(
                f,
                "; {wall:.1} ms from submit to idle ({:.0}% covered)",
                100.0 * total / wall
            )?;
        }
        writeln!(f, ":")?;
        for (title, rows) in [("phase", &self.phases), ("kernel", &self.kernels)] {
            writeln!(
                f,
                "  {title:<34} {:>8} {:>11} {:>10} {:>6}",
                "calls", "total ms", "mean µs", "share"
            )?;
            for r in rows.iter() {
                let ms = r.total_ns as f64 / 1e6;
                writeln!(
                    f,
                    "  {:<34} {:>8} {:>11.2} {:>10.1} {:>5.1}%",
                    r.name,
                    r.calls,
                    ms,
                    r.mean_us(),
                    100.0 * ms / total
                )?;
            }
        }
        Ok(())
    }
}

/// The phase of a dispatch recorded outside any named phase, from its op.
pub(crate) fn phase_of(label: &str) -> &'static str {
    match label.split("::").next().unwrap_or("") {
        "cross_entropy" | "mse" => "loss",
        "optim" => "optimizer",
        "embedding" => "embedding",
        "attention" => "attention",
        "beam" | "argmax" | "sample" => "decoding",
        "gemm" => "other GEMMs",
        _ => "other",
    }
}

/// The running totals a context keeps.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    kernels: BTreeMap<String, (u64, u64)>,
    phases: BTreeMap<String, (u64, u64)>,
    host: bool,
    wall_ns: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, kernel: &str, phase: &str, ns: u64) {
        for (map, key) in [(&mut self.kernels, kernel), (&mut self.phases, phase)] {
            let e = map.entry(key.to_string()).or_insert((0, 0));
            e.0 += 1;
            e.1 += ns;
        }
    }

    // The host's clock times submits on native only (a page has no blocking wait).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn add_host(&mut self, label: &str, ns: u64) {
        self.host = true;
        self.add(label, "whole submits", ns);
        self.add_wall(ns);
    }

    /// Adds the host wall time of one profiled submit.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn add_wall(&mut self, ns: u64) {
        self.wall_ns += ns;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    pub(crate) fn profile(&self) -> Profile {
        let rows = |map: &BTreeMap<String, (u64, u64)>| {
            let mut rows: Vec<Row> = map
                .iter()
                .map(|(name, &(calls, total_ns))| Row {
                    name: name.clone(),
                    calls,
                    total_ns,
                })
                .collect();
            rows.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.name.cmp(&b.name)));
            rows
        };
        Profile {
            timing: if self.host {
                Timing::Host
            } else {
                Timing::Timestamps
            },
            kernels: rows(&self.kernels),
            phases: rows(&self.phases),
            wall_ns: self.wall_ns,
        }
    }
}
