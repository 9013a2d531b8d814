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
#[non_exhaustive]
pub enum Timing {
    /// Timestamps written by the GPU at the start and end of each dispatch.
    Timestamps,
    /// Wall time of whole submits, measured on the host.
    Host,
}

/// One line of a [`Profile`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The dispatch, phase or recorder label.
    pub name: String,
    /// Times it ran.
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
    /// Where the times come from.
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
    /// Pipelines compiled while profiling, and the host nanoseconds their
    /// creation took (see [`CompileStats`](crate::gpu::CompileStats)).
    pub compiles: u64,
    /// Host nanoseconds creating those pipelines.
    pub compile_ns: u64,
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
        if self.compiles > 0 {
            writeln!(
                f,
                "  {} pipelines compiled, {:.1} ms creating them (a driver may compile more at \
                 a kernel's first dispatch)",
                self.compiles,
                self.compile_ns as f64 / 1e6
            )?;
        }
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

/// Most slices a trace keeps (about 150 bytes of JSON each); later ones are
/// counted, not kept.
const MAX_SLICES: usize = 500_000;

/// One slice of the trace: a recorder's recording on the host, or a phase or a
/// dispatch on the GPU, in nanoseconds on one timeline (whole numbers, so that a
/// phase's slice contains its dispatches' exactly).
#[derive(Clone, Debug)]
struct Slice {
    name: String,
    /// "host", "phase" or "kernel".
    cat: &'static str,
    /// The phase a kernel slice ran under.
    phase: &'static str,
    start_ns: u64,
    dur_ns: u64,
}

/// One timed dispatch of a profiled submit: its label, phase and GPU start and
/// end in nanoseconds (GPU clock).
pub(crate) type Timed<'a> = (&'a str, &'static str, u64, u64);

/// The running totals a context keeps.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    kernels: BTreeMap<String, (u64, u64)>,
    phases: BTreeMap<String, (u64, u64)>,
    host: bool,
    wall_ns: u64,
    slices: Vec<Slice>,
    dropped: usize,
    /// Where the GPU slices of a submit with no host time go: after the last.
    gpu_end_ns: u64,
    compiles: u64,
    compile_ns: u64,
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
        self.kernels.is_empty() && self.compiles == 0
    }

    /// Counts a pipeline compiled; with its host span (ns since the context
    /// opened, and its length), a slice of the trace's host track.
    pub(crate) fn add_compile(&mut self, label: &str, span: Option<(u64, u64)>) {
        self.compiles += 1;
        if let Some((start, ns)) = span {
            self.compile_ns += ns;
            self.push(format!("compile {label}"), "host", "", start, ns);
        }
    }

    /// Adds one profiled submit to the trace: `host`, the recorder's label and
    /// when its recording started and was submitted (ns since the context
    /// opened; `None` in a page, which has no such clock), and its timed
    /// dispatches. The GPU slices start at the submit (or after the last ones),
    /// each phase a slice around the run of dispatches recorded under it.
    pub(crate) fn add_trace(&mut self, host: Option<(&str, u64, u64)>, dispatches: &[Timed]) {
        let Some(first) = dispatches.iter().map(|d| d.2).min() else {
            return;
        };
        let offset = match host {
            Some((label, start, submit)) => {
                self.push(
                    label.to_string(),
                    "host",
                    "",
                    start,
                    submit.saturating_sub(start),
                );
                submit.max(self.gpu_end_ns)
            }
            None => self.gpu_end_ns,
        };
        let at = |ns: u64| offset + ns.saturating_sub(first);
        for run in dispatches.chunk_by(|a, b| a.1 == b.1) {
            let begin = run.iter().map(|d| d.2).min().unwrap_or(first);
            let finish = run.iter().map(|d| d.3).max().unwrap_or(begin);
            let phase = run[0].1;
            self.push(phase.to_string(), "phase", phase, at(begin), finish - begin);
            for &(label, phase, start, end) in run {
                self.push(label.to_string(), "kernel", phase, at(start), end - start);
            }
            self.gpu_end_ns = self.gpu_end_ns.max(at(finish));
        }
    }

    fn push(
        &mut self,
        name: String,
        cat: &'static str,
        phase: &'static str,
        start_ns: u64,
        dur_ns: u64,
    ) {
        if self.slices.len() < MAX_SLICES {
            self.slices.push(Slice {
                name,
                cat,
                phase,
                start_ns,
                dur_ns,
            });
        } else {
            self.dropped += 1;
        }
    }

    /// The trace as Chrome trace-event JSON: a host track of recordings and a
    /// GPU track of phases with their dispatches nested inside.
    pub(crate) fn trace_json(&self, device: &str) -> String {
        let mut out = String::from("{\"traceEvents\":[\n");
        let meta = |tid: u32, name: &str| {
            format!(
                "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{tid},\"args\":{{\"name\":{}}}}}",
                json_string(name)
            )
        };
        out.push_str("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"rnn-wgpu\"}},\n");
        out.push_str(&meta(1, "host: recording, to submit"));
        out.push_str(",\n");
        out.push_str(&meta(2, &format!("GPU: {device}")));
        for s in &self.slices {
            let tid = if s.cat == "host" { 1 } else { 2 };
            out.push_str(&format!(
                ",\n{{\"name\":{},\"cat\":\"{}\",\"ph\":\"X\",\"ts\":{},\"dur\":{},\"pid\":1,\"tid\":{tid}",
                json_string(&s.name),
                s.cat,
                micros(s.start_ns),
                micros(s.dur_ns)
            ));
            if s.cat == "kernel" {
                out.push_str(&format!(",\"args\":{{\"phase\":{}}}", json_string(s.phase)));
            }
            out.push('}');
        }
        out.push_str(&format!(
            "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{{\"dropped_slices\":{}}}}}\n",
            self.dropped
        ));
        out
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
            compiles: self.compiles,
            compile_ns: self.compile_ns,
        }
    }
}

/// `ns` as microseconds with three decimals, exactly.
fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
