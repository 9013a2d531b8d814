//! The GPU context: one adapter, device and queue, opened once and shared by every
//! tensor, op and model that uses it. Cloning is cheap (an `Arc`), and a context can
//! be sent to and shared between threads.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::pipeline::{Pipeline, PipelineCache, Source};
use crate::gpu::pool::{BufferPool, PoolStats};
use crate::gpu::profile::{Profile, Totals};
use crate::shaders::Shader;

/// Optional features the library uses when the adapter has them.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::IMMEDIATES)
    .union(wgpu::Features::PIPELINE_CACHE);

/// What to install when no adapter is found, per platform.
const NO_ADAPTER_HINT: &str = if cfg!(target_arch = "wasm32") {
    "the page has no WebGPU adapter (navigator.gpu): use a browser with WebGPU on \
     (Chromium-based browsers; headless Chromium needs --enable-unsafe-webgpu)"
} else if cfg!(target_os = "linux") {
    "install a Vulkan driver (on a machine without a GPU: `apt-get install mesa-vulkan-drivers` \
     for Mesa's lavapipe), or try WGPU_BACKEND=gl"
} else if cfg!(target_os = "macos") {
    "Metal should always be present on macOS 10.13+; check WGPU_BACKEND is unset or `metal`"
} else if cfg!(target_os = "windows") {
    "update the GPU driver, or install the WARP adapter (DX12) and set WGPU_BACKEND=dx12"
} else {
    "install a Vulkan, Metal, DX12 or GL driver for this platform"
};

/// How to choose the adapter when the library opens its own device:
/// `ContextOptions::default()`, then `with_*`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ContextOptions {
    /// Backends to consider. `None` reads `WGPU_BACKEND` (a comma list of
    /// vulkan, metal, dx12, gl, webgpu) and falls back to wgpu's defaults.
    pub backends: Option<wgpu::Backends>,
    /// Which adapter wins when several are present. `WGPU_ADAPTER_NAME` (a substring
    /// of the adapter's name) overrides it.
    pub power_preference: wgpu::PowerPreference,
    /// Label given to the device (shows up in validation errors and captures).
    pub label: String,
    /// Whether GEMMs pack their operands into textures first (see `ops::gemm`):
    /// `Some(true)` always, `Some(false)` never, `None` by adapter: on CPU adapters
    /// (where texel fetches are far cheaper than storage-buffer loads) for products
    /// of at least 2¹⁵ multiply-adds with M and N of at least 8
    /// ([`Context::gemm_packs`]).
    pub gemm_packed: Option<bool>,
    /// Whether the packed GEMM's workgroups share the rows of A through a
    /// subgroup, an eighth of A's texel fetches: `Some(false)` never, `None` or
    /// `Some(true)` wherever the adapter can ([`Context::gemm_subgroups`]).
    pub gemm_subgroups: Option<bool>,
    /// Whether a recurrent step runs as one dispatch, its recurrent product inside
    /// the cell's kernel (`ops::recurrence::fused_steps`): `Some(true)` wherever the
    /// adapter can (9 storage bindings, f32 activations), `Some(false)` never,
    /// `None` by adapter and batch.
    pub fused_steps: Option<bool>,
    /// Whether a recurrent layer runs all its steps in one dispatch per pass, a
    /// workgroup per sequence looping over time (`ops::recurrence::persistent_steps`):
    /// `Some(true)` wherever steps can fuse, `Some(false)` never, `None` by
    /// adapter, batch and hidden size (never when `fused_steps` is `Some(false)`).
    pub persistent_steps: Option<bool>,
    /// The limits to open the device with. `None` asks for everything the adapter
    /// offers (the largest buffers and workgroup storage the hardware has, where
    /// WebGPU's portable defaults would be lower); `Some(wgpu::Limits::default())`
    /// opens it with WebGPU's defaults, the limits every adapter meets.
    pub limits: Option<wgpu::Limits>,
    /// Whether compiled pipelines are kept on disk between runs where the
    /// adapter can (wgpu's `PipelineCache`, Vulkan): in the user's cache folder
    /// (`$XDG_CACHE_HOME`, else `~/.cache`, on Linux; `~/Library/Caches` on
    /// macOS; `%LOCALAPPDATA%` on Windows), under `rnn-wgpu/`, one file per
    /// adapter and driver, read when the context opens and written when it
    /// closes. Native only.
    pub pipeline_cache: bool,
}

impl ContextOptions {
    /// Backends to consider (`None`: `WGPU_BACKEND`, else wgpu's defaults).
    pub fn with_backends(self, backends: Option<wgpu::Backends>) -> Self {
        Self { backends, ..self }
    }

    /// Which adapter wins when several are present.
    pub fn with_power_preference(self, power_preference: wgpu::PowerPreference) -> Self {
        Self {
            power_preference,
            ..self
        }
    }

    /// The device's label.
    pub fn with_label(self, label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            ..self
        }
    }

    /// Whether GEMMs pack their operands (`None`: by adapter).
    pub fn with_gemm_packed(self, gemm_packed: Option<bool>) -> Self {
        Self {
            gemm_packed,
            ..self
        }
    }

    /// Whether the packed GEMM shares rows through subgroups (`None`: where it can).
    pub fn with_gemm_subgroups(self, gemm_subgroups: Option<bool>) -> Self {
        Self {
            gemm_subgroups,
            ..self
        }
    }

    /// Whether a recurrent step is one dispatch (`None`: by adapter and batch).
    pub fn with_fused_steps(self, fused_steps: Option<bool>) -> Self {
        Self {
            fused_steps,
            ..self
        }
    }

    /// Whether a layer's steps run in one dispatch per pass (`None`: by
    /// adapter, batch and hidden size).
    pub fn with_persistent_steps(self, persistent_steps: Option<bool>) -> Self {
        Self {
            persistent_steps,
            ..self
        }
    }

    /// The limits to open the device with (`None`: all the adapter offers).
    pub fn with_limits(self, limits: Option<wgpu::Limits>) -> Self {
        Self { limits, ..self }
    }

    /// Whether compiled pipelines are kept on disk between runs.
    pub fn with_pipeline_cache(self, pipeline_cache: bool) -> Self {
        Self {
            pipeline_cache,
            ..self
        }
    }
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            backends: None,
            power_preference: wgpu::PowerPreference::HighPerformance,
            label: "rnn-wgpu".into(),
            gemm_packed: None,
            gemm_subgroups: None,
            fused_steps: None,
            persistent_steps: None,
            limits: None,
            pipeline_cache: true,
        }
    }
}

/// Parses a backend list as WGPU_BACKEND takes it: `vulkan`, `metal`, `dx12`, `gl`,
/// `webgpu` (and the aliases `vk`, `mtl`, `d3d12`, `gles`, `opengl`), comma separated.
pub fn parse_backends(list: &str) -> Result<wgpu::Backends> {
    let mut backends = wgpu::Backends::empty();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        backends |= match name.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "webgpu" => wgpu::Backends::BROWSER_WEBGPU,
            _ => return Err(Error::UnknownBackend { name: name.into() }),
        };
    }
    if backends.is_empty() {
        return Err(Error::UnknownBackend { name: list.into() });
    }
    Ok(backends)
}

/// The kernel choices [`ContextOptions`] may force.
#[derive(Clone, Copy, Debug, Default)]
struct Choices {
    gemm_packed: Option<bool>,
    gemm_subgroups: Option<bool>,
    fused_steps: Option<bool>,
    persistent_steps: Option<bool>,
}

/// A handle on one GPU device. See the module docs.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    info: wgpu::AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: PipelineCache,
    pool: Mutex<BufferPool>,
    choices: Choices,
    profiling: AtomicBool,
    totals: Mutex<Totals>,
    faults: Arc<Mutex<Faults>>,
    /// A small storage buffer for a binding the dispatch's kernel does not touch
    /// (see [`Context::placeholder`]).
    placeholder: wgpu::Buffer,
    /// Compiled pipelines kept between runs ([`ContextOptions::pipeline_cache`]).
    disk: Option<DiskCache>,
    /// When the context opened: time zero of the trace (native only).
    #[cfg(not(target_arch = "wasm32"))]
    opened: std::time::Instant,
    /// Counters of [`CompileStats`].
    compiles: AtomicU64,
    compile_ns: AtomicU64,
    /// Counters of [`RecordingStats`].
    submits: AtomicU64,
    dispatches: AtomicU64,
    recording_ns: AtomicU64,
}

/// What the host has recorded on a context: submits, the dispatches in them, and
/// the host time from each recorder's start to its submit (op checks, buffers,
/// bind groups and commands; zero in a page, which has no clock). Their quotient
/// is the host cost of a dispatch, which a fast GPU waits on when a step is many
/// small dispatches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordingStats {
    /// Submits since the context was opened.
    pub submits: u64,
    /// Dispatches recorded.
    pub dispatches: u64,
    /// Host nanoseconds from each recorder's start to its submit.
    pub recording_ns: u64,
}

impl RecordingStats {
    /// The counts since `before`.
    pub fn since(&self, before: &RecordingStats) -> RecordingStats {
        RecordingStats {
            submits: self.submits - before.submits,
            dispatches: self.dispatches - before.dispatches,
            recording_ns: self.recording_ns - before.recording_ns,
        }
    }

    /// Host microseconds of recording per dispatch.
    pub fn us_per_dispatch(&self) -> f64 {
        self.recording_ns as f64 / 1e3 / self.dispatches.max(1) as f64
    }
}

/// The pipelines a context has compiled and the host time their creation
/// took. A driver may compile further at a pipeline's first dispatch, which
/// this does not see: lavapipe compiles each kernel's machine code there
/// (seconds for the largest), so on it the time to a workload's first step
/// is the measure of start-up (`bench --startup`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompileStats {
    /// Pipelines created (each entry point, constants and f16 variant once).
    pub pipelines: u64,
    /// Host nanoseconds spent creating them (zero in a page, which has no clock).
    pub compile_ns: u64,
}

/// What the device reported outside any call: its first error since the last
/// wait, and whether it is lost.
#[derive(Debug, Default)]
struct Faults {
    first: Option<Error>,
    lost: Option<String>,
}

/// Mesa's device-select Vulkan layer (installed with Mesa's Vulkan drivers)
/// asks the Wayland compositor which GPU it runs on; without a session
/// libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set" twice per
/// instance, which reads as a failure. On a headless Linux machine (none of
/// XDG_RUNTIME_DIR, WAYLAND_DISPLAY, DISPLAY, DRI_PRIME or NODEVICE_SELECT set)
/// the layer has nothing to choose by, so it is switched off with its own
/// variable, NODEVICE_SELECT=1, once, before the first instance is created.
fn quiet_headless_vulkan() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let unset = |v: &str| std::env::var_os(v).is_none();
            let vars = ["XDG_RUNTIME_DIR", "WAYLAND_DISPLAY", "DISPLAY", "DRI_PRIME"];
            if vars.iter().all(|v| unset(v)) && unset("NODEVICE_SELECT") {
                std::env::set_var("NODEVICE_SELECT", "1");
            }
        });
    }
}

/// Whether `RNN_WGPU_PROFILE` asks for the profile table (set, and not empty or 0).
fn profile_env() -> bool {
    std::env::var("RNN_WGPU_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The file `RNN_WGPU_TRACE` names for the trace, if any.
fn trace_env() -> Option<String> {
    std::env::var("RNN_WGPU_TRACE")
        .ok()
        .filter(|v| !v.is_empty())
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(disk) = &self.disk {
            disk.save();
        }
        let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        if totals.is_empty() {
            return;
        }
        if profile_env() {
            eprintln!("{}", totals.profile());
        }
        if let Some(path) = trace_env() {
            match std::fs::write(&path, totals.trace_json(&self.info.name)) {
                Ok(()) => eprintln!("trace of the profiled submits: {path}"),
                Err(e) => eprintln!("could not write the trace to {path}: {e}"),
            }
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A wgpu pipeline cache and the file it is kept in.
struct DiskCache {
    cache: wgpu::PipelineCache,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    file: std::path::PathBuf,
}

impl DiskCache {
    /// The cache of `info`'s adapter and driver, from its file where there is
    /// one; `None` where the adapter keeps no pipeline cache (or in a page).
    #[cfg(not(target_arch = "wasm32"))]
    fn open(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> Option<Self> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let name = wgpu::util::pipeline_cache_key(info)?;
        let file = user_cache_dir()?.join("rnn-wgpu").join(name);
        let data = std::fs::read(&file).ok();
        // SAFETY: the file holds what `save` wrote from `get_data` of a cache on
        // an adapter of the same key (its name); wgpu checks the data's header
        // against the adapter and driver, and with `fallback` starts an empty
        // cache from data it cannot use. A file written by anything else is
        // the risk wgpu's docs name for every cache kept on disk.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("rnn-wgpu pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(Self { cache, file })
    }

    #[cfg(target_arch = "wasm32")]
    fn open(_: &wgpu::Device, _: &wgpu::AdapterInfo) -> Option<Self> {
        None
    }

    /// Writes the cache beside its file, then over it (a crash never leaves
    /// half a file); a cache that cannot be written is only a slower start.
    fn save(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        if let (Some(data), Some(dir)) = (self.cache.get_data(), self.file.parent()) {
            // A name of its own: several contexts (threads, processes) may close at once.
            static SAVES: AtomicU64 = AtomicU64::new(0);
            let n = SAVES.fetch_add(1, Ordering::Relaxed);
            let part = self
                .file
                .with_extension(format!("{}-{n}.part", std::process::id()));
            let written = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&part, &data))
                .and_then(|()| std::fs::rename(&part, &self.file));
            if written.is_err() {
                let _ = std::fs::remove_file(&part);
            }
        }
    }
}

/// The user's cache folder: `$XDG_CACHE_HOME` or `~/.cache` (Linux and other
/// Unixes), `~/Library/Caches` (macOS), `%LOCALAPPDATA%` (Windows).
#[cfg(not(target_arch = "wasm32"))]
fn user_cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(target_os = "windows") {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    }
}

impl Context {
    /// Opens the default adapter (see [`ContextOptions`]), blocking until it is
    /// ready. Native only: a page awaits [`new_async`](Self::new_async).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        Self::with_options(&ContextOptions::default())
    }

    /// Opens an adapter chosen by `options`, blocking until it is ready (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_options(options: &ContextOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// Opens the default adapter (in a browser, `navigator.gpu`'s).
    pub async fn new_async() -> Result<Self> {
        Self::with_options_async(&ContextOptions::default()).await
    }

    /// Opens an adapter chosen by `options`.
    pub async fn with_options_async(options: &ContextOptions) -> Result<Self> {
        let asked = match options.backends {
            Some(b) => Some(b),
            None => match std::env::var("WGPU_BACKEND") {
                Ok(list) => Some(parse_backends(&list)?),
                Err(_) => None,
            },
        };
        // Unless asked for, GL is a fallback, probed only where no other
        // backend has an adapter: probing it opens an EGL display, which on
        // Linux without a session prints errors a newcomer reads as failures.
        quiet_headless_vulkan();
        let mut tries = match asked {
            Some(b) => vec![b],
            None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL],
        };
        tries.retain(|b| !b.is_empty());
        let mut failed = Vec::new();
        let mut found = None;
        for backends in tries {
            match Self::adapter(backends, options.power_preference).await {
                Ok(adapter) => {
                    found = Some(adapter);
                    break;
                }
                Err(e) => failed.push(format!("{backends:?}: {e}")),
            }
        }
        let adapter = found.ok_or_else(|| Error::NoAdapter {
            backends: format!("{:?}", asked.unwrap_or(wgpu::Backends::all())),
            hint: format!("{NO_ADAPTER_HINT} ({})", failed.join("; ")),
        })?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some(&options.label),
                required_features: adapter.features() & WANTED_FEATURES,
                required_limits: options.limits.clone().unwrap_or_else(|| adapter.limits()),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let choices = Choices {
            gemm_packed: options.gemm_packed,
            gemm_subgroups: options.gemm_subgroups,
            fused_steps: options.fused_steps,
            persistent_steps: options.persistent_steps,
        };
        let disk = if options.pipeline_cache {
            DiskCache::open(&device, &info)
        } else {
            None
        };
        Ok(Self::from_parts(info, device, queue, choices, disk))
    }

    /// The adapter of `backends` that `power` prefers, or natively the first
    /// whose name contains `WGPU_ADAPTER_NAME` (ignoring case) where that is set.
    async fn adapter(
        backends: wgpu::Backends,
        power: wgpu::PowerPreference,
    ) -> std::result::Result<wgpu::Adapter, String> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        desc.flags = wgpu::InstanceFlags::from_build_config().with_env();
        let instance = wgpu::Instance::new(desc);
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
            let name = name.to_lowercase();
            let adapters = instance.enumerate_adapters(backends).await;
            return adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&name))
                .ok_or_else(|| format!("no adapter named like WGPU_ADAPTER_NAME={name:?}"));
        }
        instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: power,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Uses a device the application already owns (its renderer's, say), so training
    /// shares that GPU instead of opening a second device. The library uses whatever
    /// features and limits the device was created with.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self::from_parts(
            device.adapter_info(),
            device,
            queue,
            Choices::default(),
            None,
        )
    }

    fn from_parts(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        choices: Choices,
        disk: Option<DiskCache>,
    ) -> Self {
        // wgpu's default for an error nobody captured is a panic; keep it for the
        // next wait or readback to return instead, and note a lost device.
        let faults = Arc::new(Mutex::new(Faults::default()));
        let sink = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let (kind, message) = match e {
                wgpu::Error::OutOfMemory { .. } => ("out of memory", e.to_string()),
                wgpu::Error::Validation { description, .. } => ("a validation error", description),
                wgpu::Error::Internal { description, .. } => ("an internal error", description),
            };
            let mut f = sink.lock().unwrap_or_else(|p| p.into_inner());
            f.first.get_or_insert(Error::Device { kind, message });
        }));
        let sink = faults.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut f = sink.lock().unwrap_or_else(|p| p.into_inner());
            f.lost = Some(format!("{reason:?}: {message}"));
        });
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Self {
            inner: Arc::new(Inner {
                faults,
                placeholder,
                disk,
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                info,
                device,
                queue,
                pipelines: PipelineCache::default(),
                pool: Mutex::new(BufferPool::default()),
                choices,
                profiling: AtomicBool::new(profile_env() || trace_env().is_some()),
                #[cfg(not(target_arch = "wasm32"))]
                opened: std::time::Instant::now(),
                totals: Mutex::new(Totals::default()),
                compiles: AtomicU64::new(0),
                compile_ns: AtomicU64::new(0),
                submits: AtomicU64::new(0),
                dispatches: AtomicU64::new(0),
                recording_ns: AtomicU64::new(0),
            }),
        }
    }

    /// The wgpu device (for interop; the library's own work goes through ops).
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Adapter name, backend, device type and driver.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The optional features enabled on this device.
    pub fn features(&self) -> wgpu::Features {
        self.inner.device.features()
    }

    /// The limits this device was opened with.
    pub fn limits(&self) -> wgpu::Limits {
        self.inner.device.limits()
    }

    /// Whether tensors may be stored as f16 (the adapter has SHADER_F16).
    pub fn has_f16(&self) -> bool {
        self.features().contains(wgpu::Features::SHADER_F16)
    }

    /// Buffer pool counters: how many buffers were ever created, how many bytes they
    /// hold, how many sit idle for reuse, and the bytes on loan now and at most.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool().stats()
    }

    /// Submits, dispatches and host recording time so far (see [`RecordingStats`]).
    pub fn recording_stats(&self) -> RecordingStats {
        let i = &self.inner;
        RecordingStats {
            submits: i.submits.load(Ordering::Relaxed),
            dispatches: i.dispatches.load(Ordering::Relaxed),
            recording_ns: i.recording_ns.load(Ordering::Relaxed),
        }
    }

    /// The pipelines compiled so far (see [`CompileStats`]).
    pub fn compile_stats(&self) -> CompileStats {
        let i = &self.inner;
        CompileStats {
            pipelines: i.compiles.load(Ordering::Relaxed),
            compile_ns: i.compile_ns.load(Ordering::Relaxed),
        }
    }

    /// Counts the pipeline `label`, whose creation began at `started`; a
    /// slice of the trace's host track when profiling.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn note_compile(&self, label: &str, started: std::time::Instant) {
        let ns = started.elapsed().as_nanos() as u64;
        let i = &self.inner;
        i.compiles.fetch_add(1, Ordering::Relaxed);
        i.compile_ns.fetch_add(ns, Ordering::Relaxed);
        if self.profiling() {
            let at = self.since_open_ns(started);
            self.totals().add_compile(label, Some((at, ns)));
        }
    }

    /// Counts the pipeline `label` (a page has no clock to time it by).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn note_compile(&self, label: &str) {
        self.inner.compiles.fetch_add(1, Ordering::Relaxed);
        if self.profiling() {
            self.totals().add_compile(label, None);
        }
    }

    /// Counts one submit of `dispatches` recorded in `ns` of host time.
    pub(crate) fn count_submit(&self, dispatches: usize, ns: u64) {
        let i = &self.inner;
        i.submits.fetch_add(1, Ordering::Relaxed);
        i.dispatches.fetch_add(dispatches as u64, Ordering::Relaxed);
        i.recording_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Sets the most bytes the buffer pool keeps idle for reuse, dropping the
    /// longest-idle buffers past it now and later. `None` (the default) keeps at
    /// most the peak of the bytes in use at once, so the pool never holds more
    /// than twice what the run has needed; a smaller cap trades memory for buffers
    /// created again.
    pub fn set_pool_idle_cap(&self, bytes: Option<u64>) {
        self.pool().set_idle_cap(bytes);
    }

    /// Starts [`PoolStats::peak_live_bytes`] again from the bytes in use now, to
    /// measure one part of a run (a benchmark workload, an evaluation). The
    /// default idle cap follows the peak, so this also lowers it until use grows
    /// again, dropping the idle buffers past it now.
    pub fn reset_pool_peak(&self) {
        self.pool().reset_peak();
    }

    /// Blocks until all submitted work has finished (native only; a page awaits
    /// [`wait_async`](Self::wait_async)). Returns the first error the device
    /// reported since the last wait ([`Error::Device`]; later ones are dropped), or
    /// [`Error::DeviceLost`] for as long as the device is lost.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        // Poll first: a lost device is noted while polling, and its loss is the
        // error to report rather than the failures it causes.
        let polled = self.poll();
        self.faults()?;
        polled
    }

    /// Resolves once all submitted work has finished, with what
    /// [`wait`](Self::wait) returns. Every readback of the library waits here: on
    /// native it polls the device (blocking the thread, as `wait` does); in a
    /// browser it awaits the queue's `onSubmittedWorkDone` and blocks nothing.
    pub async fn wait_async(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        return self.wait();
        #[cfg(target_arch = "wasm32")]
        {
            let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
            self.inner.queue.on_submitted_work_done(move || {
                // The receiver only goes away with this future.
                let _ = tx.send(());
            });
            rx.receive().await;
            self.faults()
        }
    }

    /// Blocks until all submitted work has finished, leaving any error the device
    /// reported for the next [`wait`](Self::wait).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn poll(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Readback {
                label: "device poll".into(),
                reason: e.to_string(),
            })
    }

    /// The device's pending error, taken, or its loss.
    fn faults(&self) -> Result<()> {
        let mut f = self.inner.faults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &f.lost {
            return Err(Error::DeviceLost {
                reason: reason.clone(),
            });
        }
        f.first.take().map_or(Ok(()), Err)
    }

    /// Whether a GEMM `[m, k] · [k, n]` packs its operands into textures (see
    /// [`ContextOptions::gemm_packed`]). By adapter: on CPU adapters for products of
    /// at least 2¹⁵ multiply-adds whose M and N are both at least 8: a thinner product
    /// (a decoding step at batch 1, say) wastes most of the packed kernel's 16 × 16
    /// block and pays for packing its weights at every call (W5 per token on
    /// lavapipe: 1.7 ms packed, 0.7 ms from the buffers).
    pub fn gemm_packs(&self, m: usize, n: usize, k: usize) -> bool {
        const MIN_WORK: u64 = 1 << 15;
        const MIN_SIDE: usize = 8;
        let work = m as u64 * n as u64 * k as u64;
        self.inner.choices.gemm_packed.unwrap_or(
            self.inner.info.device_type == wgpu::DeviceType::Cpu
                && work >= MIN_WORK
                && m.min(n) >= MIN_SIDE,
        )
    }

    /// Whether the packed GEMM shares A's rows across a subgroup (see
    /// [`ContextOptions::gemm_subgroups`]): natively, where the device has
    /// SUBGROUP and every subgroup has 8 invocations, the packed kernel's
    /// workgroup (lavapipe's on 256-bit SIMD). Not in a browser, whose WGSL
    /// dialect asks for an `enable` directive that naga does not parse.
    pub fn gemm_subgroups(&self) -> bool {
        let info = &self.inner.info;
        self.inner.choices.gemm_subgroups != Some(false)
            && cfg!(not(target_arch = "wasm32"))
            && self.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8
    }

    /// [`ContextOptions::fused_steps`] as the context was opened with.
    pub fn fused_steps(&self) -> Option<bool> {
        self.inner.choices.fused_steps
    }

    /// [`ContextOptions::persistent_steps`] as the context was opened with.
    pub fn persistent_steps(&self) -> Option<bool> {
        self.inner.choices.persistent_steps
    }

    /// Turns per-kernel timing on or off (see [`crate::gpu::profile`]); on at
    /// opening when `RNN_WGPU_PROFILE=1`.
    pub fn set_profiling(&self, on: bool) {
        self.inner.profiling.store(on, Ordering::Relaxed);
    }

    /// Whether submits are being profiled.
    pub fn profiling(&self) -> bool {
        self.inner.profiling.load(Ordering::Relaxed)
    }

    /// The timings gathered since the context opened or [`reset_profile`](Self::reset_profile).
    pub fn profile(&self) -> Profile {
        self.totals().profile()
    }

    /// The profiled submits as a Chrome trace (trace-event JSON, which Perfetto
    /// and chrome://tracing open): a host track with each recorder's recording,
    /// up to its submit, and a GPU track with one slice per dispatch (its kernel)
    /// nested in a slice of its phase, placed from the submit on. With
    /// `RNN_WGPU_TRACE=FILE` profiling starts with the context and the trace is
    /// written to FILE when the context is dropped.
    pub fn trace_json(&self) -> String {
        self.totals().trace_json(&self.inner.info.name)
    }

    /// Forgets the timings gathered so far (the table's and the trace's).
    pub fn reset_profile(&self) {
        *self.totals() = Totals::default();
    }

    /// Nanoseconds from the context's opening to `t`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn since_open_ns(&self, t: std::time::Instant) -> u64 {
        t.saturating_duration_since(self.inner.opened).as_nanos() as u64
    }

    pub(crate) fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        // Totals are plain counters: a poisoned lock still holds usable numbers.
        self.inner.totals.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// The pipeline for `entry` of `shader` with these override constants,
    /// compiled on this device at first use and cached.
    pub(crate) fn pipeline(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Arc<Pipeline> {
        self.pipeline_f16(shader, entry, constants, &[])
    }

    /// [`pipeline`](Self::pipeline) with the storage aliases in `f16` declared f16.
    pub(crate) fn pipeline_f16(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        f16: &[&'static str],
    ) -> Arc<Pipeline> {
        self.inner.pipelines.get(
            &self.inner.device,
            shader.into(),
            Cow::Borrowed(entry),
            constants
                .iter()
                .map(|&(k, v)| (Cow::Borrowed(k), v.to_bits()))
                .collect(),
            f16.iter().map(|&a| Cow::Borrowed(a)).collect(),
        )
    }

    /// The pipeline for `entry` of a user's kernel with the storage aliases in
    /// `f16` declared f16, from the same cache.
    pub(crate) fn kernel_pipeline(
        &self,
        source: Source,
        entry: &str,
        f16: Vec<Cow<'static, str>>,
    ) -> Arc<Pipeline> {
        self.inner.pipelines.get(
            &self.inner.device,
            source,
            Cow::Owned(entry.to_string()),
            vec![],
            f16,
        )
    }

    /// The pipeline cache compiles go through, where there is one.
    pub(crate) fn pipeline_cache(&self) -> Option<&wgpu::PipelineCache> {
        self.inner.disk.as_ref().map(|d| &d.cache)
    }

    /// A 16-byte storage buffer to fill a binding that a kernel declares but the
    /// chosen path never touches (an auto layout keeps every binding an entry point
    /// names, whatever its override constants select).
    pub(crate) fn placeholder(&self) -> &wgpu::Buffer {
        &self.inner.placeholder
    }

    pub(crate) fn pool(&self) -> std::sync::MutexGuard<'_, BufferPool> {
        // A panic while the pool was locked cannot leave it inconsistent (every
        // method finishes its map update before returning), so a poisoned lock is
        // still safe to use.
        self.inner.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A one-paragraph report of the adapter: name, backend, type, driver, the
    /// optional features in use and the limits that matter for compute.
    pub fn report(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner.info;
        let l = self.limits();
        let features: Vec<&str> = [
            (wgpu::Features::SHADER_F16, "SHADER_F16"),
            (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
            (
                wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
                "TIMESTAMP_QUERY_INSIDE_PASSES",
            ),
            (wgpu::Features::SUBGROUP, "SUBGROUP"),
            (wgpu::Features::IMMEDIATES, "IMMEDIATES"),
        ]
        .into_iter()
        .filter(|(flag, _)| self.features().contains(*flag))
        .map(|(_, name)| name)
        .collect();
        // A browser may keep the adapter's name and driver to itself.
        let name = if i.name.is_empty() {
            "(unnamed)"
        } else {
            &i.name
        };
        writeln!(f, "adapter:  {name} ({:?}, {:?})", i.backend, i.device_type)?;
        if !(i.driver.is_empty() && i.driver_info.is_empty()) {
            writeln!(f, "driver:   {} {}", i.driver, i.driver_info)?;
        }
        writeln!(f, "features: {}", features.join(", "))?;
        writeln!(
            f,
            "limits:   max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, \
             invocations per workgroup {}, workgroups per dimension {}",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
        )?;
        write!(
            f,
            "subgroup: {}..{} invocations",
            i.subgroup_min_size, i.subgroup_max_size
        )
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .finish()
    }
}
