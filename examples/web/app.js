// The web example's page: trains rnn-wgpu's character LSTM (src/lib.rs) in a loop,
// draws the loss, shows samples, the adapter and one profiled step's kernel table.
// Query options: ?stop=N pauses after N steps; ?w4 times the W4 step first.
import init, { Trainer, time_w4, w4_what, w4_flops } from "./pkg/rnn_wgpu_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const STOP = Number(params.get("stop") ?? Infinity);
const STEPS_PER_CALL = 5;
const SAMPLE_EVERY = 100;

let trainer = null;
let running = true;
let generation = 0; // bumped by a restart, so an old loop ends
let losses = [];
let nextSample = 0;
let profiled = false;
const stepTimes = [];

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

function status(text) {
  $("status").textContent = text;
  if (text) console.log(text);
}

// ---- the loss chart: raw per-step loss (faint), its EMA (bold), axes with ticks.
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
  g.fillText("Training loss", pad.l, 15);
  const n = losses.length;
  const xmax = Math.max(n, 10);
  const ymax = n ? Math.max(...losses.slice(Math.min(3, n - 1))) * 1.05 : 5;
  const ymin = n ? Math.max(0, Math.min(...losses) * 0.9) : 0;
  const x = (i) => pad.l + (i / xmax) * pw;
  const y = (v) => pad.t + (1 - (v - ymin) / (ymax - ymin || 1)) * ph;
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#e6e9ef";
  g.fillStyle = "#5b6475";
  g.lineWidth = 1;
  const ys = niceStep(ymax - ymin, 5);
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
  const line = (values, color, width) => {
    g.strokeStyle = color;
    g.lineWidth = width;
    g.beginPath();
    values.forEach((v, i) => (i ? g.lineTo(x(i + 1), y(v)) : g.moveTo(x(i + 1), y(v))));
    g.stroke();
  };
  const smooth = smoothed(losses);
  line(losses, "rgba(58,110,232,0.28)", 1);
  line(smooth, "#1f4fbf", 2.2);
  g.textAlign = "left";
  g.font = "11px system-ui, sans-serif";
  const lx = pad.l + pw - 150;
  g.fillStyle = "rgba(58,110,232,0.35)";
  g.fillRect(lx, pad.t + 8, 18, 2);
  g.fillStyle = "#1d2330";
  g.fillText("per step", lx + 24, pad.t + 12);
  g.fillStyle = "#1f4fbf";
  g.fillRect(lx, pad.t + 24, 18, 3);
  g.fillStyle = "#1d2330";
  g.fillText(`moving average (${DECAY})`, lx + 24, pad.t + 28);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

async function sample(step) {
  const temperature = Number($("temp").value);
  const text = await trainer.sample("\n", 240, temperature, BigInt(step));
  const box = document.createElement("div");
  box.innerHTML = `<div class="step">after step ${step}</div><pre></pre>`;
  box.querySelector("pre").textContent = text;
  $("samples").prepend(box);
  while ($("samples").children.length > 3) $("samples").lastChild.remove();
  console.log(`sample after step ${step}: ${JSON.stringify(text.slice(0, 80))}`);
}

// One profiled step; its table shows once the GPU is done, which the next
// (unprofiled) step awaits. Returns both steps' losses.
async function profileOnce() {
  trainer.set_profiling(true);
  const profiled = await trainer.train(1);
  trainer.set_profiling(false);
  const next = await trainer.train(1);
  $("profile").textContent = trainer.profile();
  return [...profiled, ...next];
}

async function loop(gen) {
  while (gen === generation) {
    if (!running || trainer.steps() >= STOP) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const t0 = performance.now();
    const got = await trainer.train(STEPS_PER_CALL);
    const dt = (performance.now() - t0) / got.length;
    if (gen !== generation) return;
    for (const v of got) {
      losses.push(v);
      stepTimes.push(dt);
    }
    const ema = smoothed(losses).at(-1);
    while (stepTimes.length > 50) stepTimes.shift();
    const steps = trainer.steps();
    const ms = median(stepTimes);
    $("step").textContent = steps;
    $("loss").textContent = ema.toFixed(3);
    $("ms").textContent = ms.toFixed(1);
    $("cps").textContent = Math.round((trainer.chars_per_step() / ms) * 1000).toLocaleString("en");
    draw();
    if (got.length && Math.floor(steps / 50) > Math.floor((steps - got.length) / 50)) console.log(`step ${steps} loss ${ema.toFixed(3)} ms/step ${ms.toFixed(1)}`);
    if (steps >= 20 && !profiled) {
      profiled = true;
      losses.push(...(await profileOnce()));
    }
    if (steps >= nextSample || steps >= STOP) {
      nextSample = steps + SAMPLE_EVERY;
      await sample(steps);
    }
    if (steps >= STOP) console.log(`stopped at step ${steps}`);
  }
}

async function start(text) {
  generation++;
  status("");
  losses = [];
  nextSample = SAMPLE_EVERY;
  profiled = false;
  stepTimes.length = 0;
  $("samples").innerHTML = "";
  try {
    trainer = await Trainer.create(text, Number($("hidden").value), 1);
  } catch (e) {
    status(`could not start: ${e}`);
    return;
  }
  $("model").textContent = `${trainer.vocab()} chars · ${(trainer.parameters() / 1000).toFixed(0)}k params`;
  const info = (await navigator.gpu?.requestAdapter())?.info;
  const where = info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : "";
  $("adapter").textContent = (where ? `browser adapter: ${where}\n` : "") + trainer.adapter();
  console.log(`adapter: ${trainer.adapter().replace(/\n/g, "; ")}`);
  draw();
  loop(generation);
}

async function timeW4() {
  const was = running;
  running = false;
  $("w4out").textContent = "timing 10 steps after 3 warm-up steps…";
  try {
    const times = await time_w4(3, 10);
    const ms = median(times);
    const gflops = w4_flops() / (ms * 1e6);
    $("w4out").textContent = `median ${ms.toFixed(1)} ms/step (${Math.min(...times).toFixed(0)}–${Math.max(...times).toFixed(0)}), ${gflops.toFixed(2)} GFLOP/s`;
    console.log(`W4 ms/step median ${ms.toFixed(1)} min ${Math.min(...times)} max ${Math.max(...times)} over ${times.length} steps`);
  } catch (e) {
    $("w4out").textContent = `failed: ${e}`;
    console.log(`W4 failed: ${e}`);
  }
  running = was;
}

function readFile(file) {
  file.text().then((text) => {
    $("text").value = text;
    start(text);
  });
}

async function main() {
  await init();
  $("w4what").textContent = w4_what();
  if (!navigator.gpu) {
    status("this browser has no WebGPU (navigator.gpu is missing)");
    $("adapter").textContent = "no WebGPU";
    return;
  }
  $("text").value = await (await fetch("./default.txt")).text();
  $("pause").onclick = () => {
    running = !running;
    $("pause").textContent = running ? "Pause" : "Resume";
  };
  $("restart").onclick = () => start($("text").value);
  $("temp").oninput = () => ($("tval").textContent = $("temp").value);
  $("w4").onclick = timeW4;
  $("file").onchange = (e) => e.target.files[0] && readFile(e.target.files[0]);
  document.body.addEventListener("dragover", (e) => {
    e.preventDefault();
    document.body.classList.add("dragging");
  });
  document.body.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.body.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    if (e.dataTransfer.files[0]) readFile(e.dataTransfer.files[0]);
  });
  window.addEventListener("resize", draw);
  if (params.has("w4")) await timeW4();
  await start($("text").value);
}

main().catch((e) => status(`error: ${e}`));
