// Loads a page in headless Chromium and relays its console until a line says it
// is done: serves DIR on 127.0.0.1, starts Chromium with WebGPU on, drives it
// through the DevTools protocol (Node's built-in WebSocket) and prints every
// console line. Exits 0 when the page's "N passed, M failed" line has M = 0
// (or, with --until, when a line matches), 1 on a failure, 2 on a time-out.
//
//   node --experimental-websocket driver.mjs --dir DIR [--page index.html]
//        [--until REGEX] [--fail REGEX] [--screenshot FILE] [--timeout SECONDS]
//        [--webgpu off] [--save DIR]
//
// --fail: a console line that matches is a failure (exit 1) at once.
// --save: the page may PUT files to /upload/NAME; they are written to DIR/NAME.
// --webgpu off: Chromium as it starts on Linux by default, without WebGPU.
//
// CHROMIUM names the browser binary (default /usr/lib/chromium/chromium).
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const root = resolve(args.dir ?? ".");
const page = args.page ?? "index.html";
const until = args.until ? new RegExp(args.until) : null;
const failing = args.fail ? new RegExp(args.fail) : null;
const timeout = Number(args.timeout ?? 600) * 1000;

const TYPES = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".txt": "text/plain",
  ".css": "text/css",
};
const saveDir = args.save ? resolve(args.save) : null;
const server = createServer((req, res) => {
  const upload = req.url.match(/^\/upload\/([\w.-]+)$/);
  if (req.method === "PUT" && upload && saveDir) {
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", () => {
      writeFileSync(join(saveDir, upload[1]), Buffer.concat(parts));
      res.writeHead(204);
      res.end();
    });
    return;
  }
  const path = normalize(join(root, decodeURIComponent(new URL(req.url, "http://x").pathname)));
  try {
    if (!path.startsWith(root) || !statSync(path).isFile()) throw new Error("not found");
    res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream" });
    res.end(readFileSync(path));
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/${page}`;

const profile = mkdtempSync(join(tmpdir(), "rnn-wgpu-chromium-"));
const browser = spawn(
  process.env.CHROMIUM ?? "/usr/lib/chromium/chromium",
  [
    "--headless=new",
    "--no-sandbox",
    ...(args.webgpu === "off" ? ["--disable-features=WebGPU"] : ["--enable-unsafe-webgpu"]),
    `--user-data-dir=${profile}`,
    "--remote-debugging-port=0",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1280,900",
    "about:blank",
  ],
  { stdio: ["ignore", "ignore", "pipe"] },
);

let finished = false;
function finish(code, why) {
  if (finished) return;
  finished = true;
  if (why) console.log(why);
  browser.kill("SIGKILL");
  server.close();
  try {
    rmSync(profile, { recursive: true, force: true });
  } catch {}
  process.exit(code);
}
setTimeout(() => finish(2, `time-out after ${timeout / 1000} s`), timeout);
browser.on("exit", (code) => finish(1, `the browser exited (${code})`));

const endpoint = await new Promise((ok) => {
  let text = "";
  browser.stderr.on("data", (chunk) => {
    text += chunk;
    const m = text.match(/DevTools listening on (ws:\/\/\S+)/);
    if (m) ok(m[1]);
  });
});

const ws = new WebSocket(endpoint);
await new Promise((ok, fail) => {
  ws.onopen = ok;
  ws.onerror = fail;
});
let nextId = 1;
const pending = new Map();
function send(method, params = {}, sessionId) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params, sessionId }));
  return new Promise((ok, fail) => pending.set(id, { ok, fail }));
}

async function screenshot() {
  if (!args.screenshot) return;
  const shot = await send("Page.captureScreenshot", { format: "png" }, session);
  writeFileSync(args.screenshot, Buffer.from(shot.data, "base64"));
  console.log(`screenshot: ${args.screenshot}`);
}

let session;
ws.onmessage = async (event) => {
  const msg = JSON.parse(event.data);
  if (msg.id && pending.has(msg.id)) {
    const { ok, fail } = pending.get(msg.id);
    pending.delete(msg.id);
    msg.error ? fail(new Error(msg.error.message)) : ok(msg.result);
    return;
  }
  if (msg.method === "Runtime.exceptionThrown") {
    const d = msg.params.exceptionDetails;
    finish(1, `page exception: ${d.exception?.description ?? d.text}`);
    return;
  }
  if (msg.method !== "Runtime.consoleAPICalled") return;
  const line = msg.params.args.map((a) => a.value ?? a.description ?? "").join(" ");
  console.log(line);
  const result = line.match(/^(\d+) passed, (\d+) failed$/);
  if (failing && failing.test(line)) {
    finish(1);
  } else if (until && until.test(line)) {
    await screenshot();
    finish(0);
  } else if (result) {
    await screenshot();
    finish(Number(result[2]) === 0 && Number(result[1]) > 0 ? 0 : 1);
  }
};

const { targetId } = await send("Target.createTarget", { url: "about:blank" });
({ sessionId: session } = await send("Target.attachToTarget", { targetId, flatten: true }));
await send("Runtime.enable", {}, session);
await send("Page.enable", {}, session);
await send("Emulation.setDeviceMetricsOverride", { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false }, session);
await send("Page.navigate", { url }, session);
