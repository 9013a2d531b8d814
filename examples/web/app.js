// The web example's page: trains rnn-wgpu's character language model (src/lib.rs)
// in a loop, draws the training loss and the held-out loss, generates on demand,
// saves and loads the model (safetensors with PyTorch's names), and shows the
// adapter and one profiled step's kernel table.
// Query options: ?stop=N pauses after N steps; ?w4 times the W4 step first;
// ?cell=gru (lstm, gru, rnn, mingru, minlstm) picks the first model's cell;
// ?check runs the page's own checks (restarts, save and load) and logs the result.
import init, { Trainer, min_chars, time_w4, w4_what, w4_flops } from "./pkg/rnn_wgpu_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// ?stop=N stops after N steps; without a number, it does not stop.
const stopParam = params.get("stop");
const STOP = stopParam !== null && stopParam.trim() !== "" && Number.isFinite(Number(stopParam))
  ? Number(stopParam)
  : Infinity;
const CHECK = params.has("check");
const CELL = params.get("cell");
const STEPS_PER_CALL = 5;
const SAMPLE_EVERY = 100;
const VALIDATE_EVERY = 50;

let trainer = null;
let running = true;
let generation = 0; // bumped by a restart or a load, so that the old loop ends
let losses = [];
let heldOut = []; // [step, loss]
let nextSample = 0;
let nextValidation = 0;
let profiled = false;
let stoppedShown = false;
// The current trainer's step count as last read, for code outside the loop: a
// trainer may not be asked anything while it trains.
let stepNow = 0;
let canTrain = false;
let browserAdapter = ""; // what the browser says its adapter is
const stepTimes = [];

// Every call into a trainer goes through this queue, one at a time: a trainer
// is a Rust object that two calls may not use at once.
let queue = Promise.resolve();
function use(task) {
  const run = queue.then(task);
  queue = run.catch(() => {});
  return run;
}

// Errors from the library and the browser, in the page's words.
function plain(e) {
  const text = String(e?.message ?? e);
  if (/vulkan support not compiled in|no suitable adapter|requestAdapter/i.test(text)) {
    return "no GPU adapter was given to this page (WebGPU is there, but the browser offered no adapter)";
  }
  return text;
}

// The moving average of the losses, debiased as Adam debiases its moments, so
// that it follows the first steps instead of lagging from the first value.
const DECAY = 0.9;
function smoothed(values) {
  let e = 0;
  return values.map((v, i) => {
    e = DECAY * e + (1 - DECAY) * v;
    return e / (1 - DECAY ** (i + 1));
  });
}

function status(text, error = true) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  if (text) console.log(text);
}

function setState(text) {
  $("state").textContent = text;
}

// ---- the loss chart: raw per-step loss (faint), its EMA (bold), held-out loss
// (red), axes with ticks; every line clipped to the plot.
function niceStep(span, target) {
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
}

function draw() {
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  canvas.width = w * dpr;
  canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const pad = { l: 52, r: 12, t: 24, b: 38 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  g.fillStyle = "#1d2330";
  g.font = "600 13px system-ui, sans-serif";
  g.fillText("Training and held-out loss", pad.l, 15);
  const n = losses.length;
  const xmax = Math.max(n, 10);
  const all = [...losses.slice(Math.min(3, Math.max(n - 1, 0))), ...heldOut.map((p) => p[1])];
  const ymax = all.length ? Math.max(...all) * 1.05 : 5;
  const ymin = all.length ? Math.max(0, Math.min(...losses, ...heldOut.map((p) => p[1])) * 0.9) : 0;
  const x = (i) => pad.l + (i / xmax) * pw;
  const y = (v) => pad.t + (1 - (v - ymin) / (ymax - ymin || 1)) * ph;
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#e6e9ef";
  g.fillStyle = "#5b6475";
  g.lineWidth = 1;
  const ys = niceStep(ymax - ymin || 1, 5);
  g.textAlign = "right";
  for (let v = Math.ceil(ymin / ys) * ys; v <= ymax; v += ys) {
    g.beginPath();
    g.moveTo(pad.l, y(v));
    g.lineTo(pad.l + pw, y(v));
    g.stroke();
    g.fillText(v.toFixed(ys < 0.1 ? 2 : 1), pad.l - 6, y(v) + 4);
  }
  const xs = niceStep(xmax, 8);
  g.textAlign = "center";
  for (let s = 0; s <= xmax; s += xs) {
    g.beginPath();
    g.moveTo(x(s), pad.t);
    g.lineTo(x(s), pad.t + ph);
    g.stroke();
    g.fillText(String(s), x(s), pad.t + ph + 15);
  }
  g.fillText("training step", pad.l + pw / 2, h - 4);
  g.save();
  g.translate(13, pad.t + ph / 2);
  g.rotate(-Math.PI / 2);
  g.fillText("nats / character", 0, 0);
  g.restore();
  g.strokeStyle = "#8a93a5";
  g.strokeRect(pad.l, pad.t, pw, ph);
  g.save();
  g.beginPath();
  g.rect(pad.l, pad.t, pw, ph);
  g.clip();
  const line = (points, color, width) => {
    g.strokeStyle = color;
    g.lineWidth = width;
    g.beginPath();
    points.forEach(([s, v], i) => (i ? g.lineTo(x(s), y(v)) : g.moveTo(x(s), y(v))));
    g.stroke();
  };
  line(losses.map((v, i) => [i + 1, v]), "rgba(58,110,232,0.28)", 1);
  line(smoothed(losses).map((v, i) => [i + 1, v]), "#1f4fbf", 2.2);
  line(heldOut, "#c2361f", 1.6);
  g.fillStyle = "#c2361f";
  for (const [s, v] of heldOut) {
    g.beginPath();
    g.arc(x(s), y(v), 3, 0, 2 * Math.PI);
    g.fill();
  }
  g.restore();
  g.textAlign = "left";
  const lx = pad.l + pw - 190;
  const legend = [
    ["rgba(58,110,232,0.35)", 2, "per step"],
    ["#1f4fbf", 3, `moving average (${DECAY})`],
    ["#c2361f", 3, "held-out text (last tenth)"],
  ];
  legend.forEach(([color, thick, label], i) => {
    g.fillStyle = "rgba(255,255,255,0.85)";
    g.fillRect(lx - 4, pad.t + 2 + 16 * i, 194, 16);
    g.fillStyle = color;
    g.fillRect(lx, pad.t + 8 + 16 * i, 18, thick);
    g.fillStyle = "#1d2330";
    g.fillText(label, lx + 24, pad.t + 12 + 16 * i);
  });
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

// The generation settings of the Generate card.
function how() {
  return {
    prompt: $("prompt").value || "\n",
    len: Math.max(1, Math.min(2000, Number($("len").value) || 240)),
    temperature: Number($("temp").value),
    topK: Math.max(0, Number($("topk").value) || 0),
    topP: Math.min(1, Math.max(0.01, Number($("topp").value) || 1)),
    seed: BigInt(Math.max(0, Number($("seed").value) || 0)),
  };
}

async function generate(t, label, seed) {
  const h = how();
  const text = await use(() => t.sample(h.prompt, h.len, h.temperature, h.topK, h.topP, seed ?? h.seed));
  const box = document.createElement("div");
  box.innerHTML = `<div class="step"></div><pre></pre>`;
  box.querySelector(".step").textContent = label;
  box.querySelector("pre").textContent = h.prompt + text;
  $("samples").prepend(box);
  while ($("samples").children.length > 3) $("samples").lastChild.remove();
  console.log(`sample (${label}): ${JSON.stringify(text.slice(0, 80))}`);
  return text;
}

// One profiled step; its table shows once the GPU is done, which the next
// (unprofiled) step awaits. Returns both steps' losses.
async function profileOnce(t) {
  return use(async () => {
    t.set_profiling(true);
    const first = await t.train(1);
    t.set_profiling(false);
    const next = await t.train(1);
    $("profile").textContent = t.profile();
    return [...first, ...next];
  });
}

async function validate(t) {
  const v = await use(() => t.validate());
  heldOut.push([stepNow, v]);
  $("val").textContent = v.toFixed(3);
  console.log(`held-out loss at step ${stepNow}: ${v.toFixed(3)}`);
}

async function loop(gen, t) {
  while (gen === generation) {
    if (!running || stepNow >= STOP || !canTrain) {
      if (stepNow >= STOP && !stoppedShown) {
        stoppedShown = true;
        setState(`stopped at step ${stepNow}`);
        console.log(`stopped at step ${stepNow}`);
      }
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const t0 = performance.now();
    let got;
    try {
      got = await use(() => t.train(STEPS_PER_CALL));
    } catch (e) {
      if (gen === generation) status(`training stopped: ${plain(e)}`);
      return;
    }
    const dt = (performance.now() - t0) / got.length;
    if (gen !== generation) return;
    for (const v of got) {
      losses.push(v);
      stepTimes.push(dt);
    }
    while (stepTimes.length > 50) stepTimes.shift();
    const steps = t.steps();
    stepNow = steps;
    const ms = median(stepTimes);
    $("step").textContent = steps;
    $("loss").textContent = smoothed(losses).at(-1).toFixed(3);
    $("ms").textContent = ms.toFixed(1);
    $("cps").textContent = Math.round((t.chars_per_step() / ms) * 1000).toLocaleString("en");
    setState("training");
    if (got.length && Math.floor(steps / 50) > Math.floor((steps - got.length) / 50)) {
      console.log(`step ${steps} loss ${smoothed(losses).at(-1).toFixed(3)} ms/step ${ms.toFixed(1)}`);
    }
    if (steps >= 20 && !profiled) {
      profiled = true;
      losses.push(...(await profileOnce(t)));
    }
    if (gen !== generation) return;
    if (steps >= nextValidation || steps >= STOP) {
      nextValidation = steps + VALIDATE_EVERY;
      await validate(t);
    }
    if (Math.floor(steps / AUTOSAVE_EVERY) > Math.floor((steps - got.length) / AUTOSAVE_EVERY)) {
      await autosave(t).catch((e) => console.log(`could not keep the model: ${plain(e)}`));
    }
    if (steps >= nextSample || steps >= STOP) {
      nextSample = steps + SAMPLE_EVERY;
      await generate(t, `after step ${steps}`, BigInt(steps));
    }
    draw();
  }
}

function settings() {
  return {
    cell: $("cell").value,
    hidden: Number($("hidden").value),
    layers: Number($("layers").value),
    lr: Number($("lr").value),
    batch: Number($("batch").value),
    bptt: Number($("bptt").value),
    seed: BigInt(Math.max(0, Math.floor(Number($("initseed").value) || 0))),
  };
}

// Shows a new trainer's model and starts its loop; the old trainer, if any,
// goes once its last call is done.
function adopt(t, gen, from) {
  const old = trainer;
  trainer = t;
  if (old) use(() => old.free());
  losses = [];
  heldOut = [];
  stepTimes.length = 0;
  profiled = false;
  stoppedShown = false;
  nextSample = t.steps() + SAMPLE_EVERY;
  nextValidation = t.steps() + 1;
  for (const id of ["loss", "ms", "cps", "val"]) $(id).textContent = "–";
  stepNow = t.steps();
  canTrain = t.can_train();
  $("step").textContent = stepNow;
  $("profile").textContent = "after the first 20 steps";
  $("samples").innerHTML = "";
  const [train, held] = t.split_sizes();
  $("model").textContent = `${t.describe()} · ${t.vocab()} chars · ${(t.parameters() / 1000).toFixed(0)}k params`;
  $("split").textContent = `${train.toLocaleString("en")} characters to train on, ${held.toLocaleString("en")} held out${from ? ` · ${from}` : ""}`;
  if (t.vocab() > 256) {
    status(`${t.vocab()} distinct characters: the output layer is that wide, so each step is slower (the default text has ${65})`, false);
  }
  $("adapter").textContent = (browserAdapter ? `browser adapter: ${browserAdapter}\n` : "") + t.adapter();
  // A loaded model's held-out loss at once, whether or not it trains on.
  if (from) validate(t).then(draw, () => {});
  setState(canTrain ? "training" : "loaded: generate only (no text to train on)");
  draw();
  loop(gen, t);
}

// Builds a trainer with `make` and switches to it; a failure leaves the
// running model as it was and says why.
async function switchTo(make, from) {
  const gen = ++generation;
  const was = trainer;
  status("building the model…", false);
  let t;
  try {
    t = await make();
  } catch (e) {
    if (gen !== generation) return false;
    status(plain(e));
    // The running model goes on.
    if (was) {
      generation++;
      loop(generation, was);
    }
    return false;
  }
  if (gen !== generation) {
    // A later restart won; this one is not needed.
    use(() => t.free());
    return false;
  }
  status("", false);
  adopt(t, gen, from);
  return true;
}

function restart() {
  return switchTo(() => {
    const s = settings();
    return Trainer.create($("text").value, s.cell, s.hidden, s.layers, s.lr, s.batch, s.bptt, s.seed);
  });
}

// A trainer's file and the step it holds, read in one turn of the queue (the
// page's step count lags a training call in flight).
const saveAt = (t) => use(async () => [await t.save(), t.steps()]);

async function save() {
  if (!trainer) return null;
  const [bytes, step] = await saveAt(trainer);
  const blob = new Blob([bytes], { type: "application/octet-stream" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `char-lm-step-${step}.safetensors`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  console.log(`saved ${bytes.length} bytes at step ${step}`);
  return bytes;
}

function load(bytes, name) {
  return switchTo(() => Trainer.load(bytes, $("text").value), `loaded ${name}`);
}

// ---- the model kept in the browser (IndexedDB) every AUTOSAVE_EVERY steps, so
// that a reload can resume it.
const AUTOSAVE_EVERY = 200;
function store(mode, act) {
  return new Promise((ok, fail) => {
    const open = indexedDB.open("rnn-wgpu-web", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("models");
    open.onerror = () => fail(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction("models", mode);
      const req = act(tx.objectStore("models"));
      req.onsuccess = () => ok(req.result);
      req.onerror = () => fail(req.error);
    };
  });
}

async function autosave(t) {
  const [bytes, step] = await saveAt(t);
  await store("readwrite", (s) => s.put({ bytes, text: $("text").value, step, time: Date.now() }, "last"));
  console.log(`kept the model of step ${step} in this browser`);
}

// Offers the model kept before a reload.
async function offerResume() {
  const kept = await store("readonly", (s) => s.get("last")).catch(() => null);
  if (!kept) return;
  const when = new Date(kept.time).toLocaleString();
  $("resume").textContent = `Resume the model of step ${kept.step} (kept ${when})`;
  $("resume").hidden = false;
  $("resume").onclick = () => {
    $("text").value = kept.text;
    $("resume").hidden = true;
    load(kept.bytes, `the model kept at step ${kept.step}`);
  };
}

// The names and shapes in a safetensors file's header.
function tensorsOf(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + size)));
  return Object.entries(header)
    .filter(([k]) => k !== "__metadata__")
    .map(([k, v]) => `${k} [${v.shape.join(", ")}]`);
}

function readText(file) {
  file.text().then((text) => {
    $("text").value = text;
    restart();
  });
}

const until = (pred) =>
  new Promise((ok) => {
    const tick = () => (pred() ? ok() : setTimeout(tick, 50));
    tick();
  });

// ?check: the page's own checks, each logged; the last line says whether all held.
async function check() {
  const fail = (why) => {
    throw new Error(why);
  };
  await until(() => trainer && stepNow >= 10);
  // A failed restart leaves the running model training.
  const text = $("text").value;
  const before = trainer;
  $("text").value = "too short";
  await restart();
  if (trainer !== before || !/too short/.test($("status").textContent)) fail("a failed restart replaced the model");
  const at = stepNow;
  await until(() => stepNow > at);
  console.log(`check: a failed restart said "${$("status").textContent.slice(0, 60)}…" and step ${at} went on to ${stepNow}`);
  // Two quick restarts: one new run, no error.
  $("text").value = text;
  $("restart").click();
  $("restart").click();
  await until(() => trainer !== before && stepNow >= STOP);
  console.log(`check: two quick restarts gave one new run, stopped at step ${stepNow}`);
  await until(() => heldOut.length && heldOut.at(-1)[0] >= STOP);
  // Save, then load into a fresh trainer: the same tensors, the same samples.
  // Training stops first, so that no step lands between the file and the count.
  const saved = trainer;
  running = false;
  const bytes = await save();
  const savedAt = saved.steps();
  const names = tensorsOf(bytes);
  console.log(`check: saved ${names.length} tensors: ${names.filter((n) => !n.startsWith("optim.")).join(", ")}`);
  if (!names.some((n) => n.startsWith("rnn.weight_ih_l0")) || !names.some((n) => n.startsWith("fc.weight"))) {
    fail("the saved file lacks the model's tensors");
  }
  const a = await generate(saved, "before saving, seed 7", 7n);
  if (!(await load(bytes, "the saved file"))) fail(`loading failed: ${$("status").textContent}`);
  const b = await generate(trainer, "loaded, seed 7", 7n);
  if (a !== b) fail(`the loaded model samples ${JSON.stringify(b.slice(0, 40))}, not ${JSON.stringify(a.slice(0, 40))}`);
  if (stepNow !== savedAt) fail(`the step count was not restored (${stepNow}, saved at ${savedAt})`);
  console.log(`check: the loaded model (step ${stepNow}) samples the same ${a.length} characters for seed 7`);
  // The file and the page's logits for a prompt, for tools/page_check.py
  // (where the page is served by the driver with --save).
  const prompt = "Shall I compare thee";
  const logits = await use(() => trainer.logits(prompt));
  const put = (name, body) => fetch(`./upload/${name}`, { method: "PUT", body });
  const sent = await Promise.all([
    put("page.safetensors", bytes),
    put("page_logits.json", JSON.stringify({ prompt, logits: Array.from(logits) })),
  ]).then((r) => r.every((x) => x.ok), () => false);
  console.log(`check: ${sent ? "sent" : "could not send"} the file and the logits of ${JSON.stringify(prompt)}`);
  // Kept in the browser, then a reload: the page offers to resume it.
  await autosave(trainer);
  console.log(`check: reloading`);
  location.search = `?check=resume&stop=${STOP}${CELL === null ? "" : `&cell=${CELL}`}`;
  return "reloading";
}

// ?check=resume, after check()'s reload: resume the kept model.
async function checkResume() {
  await until(() => !$("resume").hidden);
  const kept = Number($("resume").textContent.match(/step (\d+)/)[1]);
  const before = trainer;
  $("resume").click();
  await until(() => trainer !== before);
  if (stepNow !== kept) throw new Error(`resumed at step ${stepNow}, kept at ${kept}`);
  console.log(`check: after the reload, "${$("resume").textContent}" resumed the model at step ${stepNow}`);
}

async function main() {
  await init();
  $("w4what").textContent = w4_what();
  const showMin = () => ($("min").textContent = min_chars(Number($("bptt").value)));
  showMin();
  $("bptt").onchange = showMin;
  // Without WebGPU nothing can run: say so at the top, in the page's words.
  const refuse = (what, text) => {
    document.querySelectorAll("button, input, select, textarea").forEach((e) => (e.disabled = true));
    $("adapter").textContent = what;
    setState(what);
    $("banner").textContent = text;
    $("banner").hidden = false;
    draw();
    console.log(`could not start: ${what}`);
  };
  const help = "Use Chrome or Edge 113 or later (on Linux, start it with --enable-unsafe-webgpu), Safari 26, or Firefox 141 or later on Windows.";
  if (!navigator.gpu) {
    refuse("no WebGPU", `This browser has no WebGPU, which the page needs to train on the GPU. ${help}`);
    return;
  }
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter) {
    refuse("no GPU adapter", `WebGPU is there, but the browser gave this page no GPU adapter (it may be blocklisted or switched off). ${help}`);
    return;
  }
  const info = adapter.info ?? {};
  browserAdapter = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "(the browser does not name it)";
  $("text").value = await (await fetch("./default.txt")).text();
  $("pause").onclick = () => {
    running = !running;
    $("pause").textContent = running ? "Pause" : "Resume";
    setState(running ? "training" : "paused");
  };
  $("restart").onclick = () => restart();
  $("temp").oninput = () => ($("tval").textContent = $("temp").value);
  $("w4").onclick = timeW4;
  $("generate").onclick = () => trainer && generate(trainer, `on demand, seed ${$("seed").value}`).catch((e) => status(plain(e)));
  $("save").onclick = () => save().catch((e) => status(plain(e)));
  $("load").onchange = async (e) => {
    const file = e.target.files[0];
    if (file) await load(new Uint8Array(await file.arrayBuffer()), file.name);
    e.target.value = "";
  };
  $("file").onchange = (e) => e.target.files[0] && readText(e.target.files[0]);
  document.body.addEventListener("dragover", (e) => {
    e.preventDefault();
    document.body.classList.add("dragging");
  });
  document.body.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.body.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    const file = e.dataTransfer.files[0];
    if (!file) return;
    if (file.name.endsWith(".safetensors")) {
      file.arrayBuffer().then((b) => load(new Uint8Array(b), file.name));
    } else {
      readText(file);
    }
  });
  window.addEventListener("resize", draw);
  if (CELL !== null) {
    if (![...$("cell").options].some((o) => o.value === CELL)) {
      console.log(`error: no cell ${JSON.stringify(CELL)} (lstm, gru, rnn, mingru or minlstm)`);
    } else {
      $("cell").value = CELL;
    }
  }
  await offerResume();
  if (params.has("w4")) await timeW4();
  await restart();
  if (CHECK) {
    (params.get("check") === "resume" ? checkResume() : check())
      .then((r) => r !== "reloading" && console.log("check passed"))
      .catch((e) => console.log(`check failed: ${plain(e)}`));
  }
}

async function timeW4() {
  const was = running;
  running = false;
  $("w4out").textContent = "timing 10 steps after 3 warm-up steps…";
  try {
    const times = await use(() => time_w4(3, 10));
    const ms = median(times);
    const gflops = w4_flops() / (ms * 1e6);
    $("w4out").textContent = `median ${ms.toFixed(1)} ms/step (${Math.min(...times).toFixed(0)}–${Math.max(...times).toFixed(0)}), ${gflops.toFixed(2)} GFLOP/s`;
    console.log(`W4 ms/step median ${ms.toFixed(1)} min ${Math.min(...times)} max ${Math.max(...times)} over ${times.length} steps`);
  } catch (e) {
    $("w4out").textContent = `failed: ${plain(e)}`;
    console.log(`W4 failed: ${plain(e)}`);
  }
  running = was;
}

main().catch((e) => {
  status(`error: ${plain(e)}`);
});
