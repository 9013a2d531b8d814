// The page of the browser test suite (see tests/browser/run): compiles every
// shader the library ships with this browser's own WebGPU, then runs the
// library's cases (src/lib.rs). Every result is one console line; the last one is
// "N passed, M failed".
import init, { shaders, run_tests } from "./pkg/rnn_wgpu_browser_tests.js";

const out = document.getElementById("log");
function say(line) {
  console.log(line);
  out.textContent += line + "\n";
}

// Values the launchers give the non-boolean override constants (ops::fma_probe's
// chain counts, ops::gemm's thin rows, ops::stream_step's cells and workgroup
// sizes); a boolean override takes both values. An override missing here fails
// the check, so a new one gets listed.
const VALUES = { CHAINS: [2, 4, 8], THIN_ROWS: [1, 2, 3, 4], MODE: [0, 1, 2, 3], WG: [16, 64] };

// The functions of a WGSL source: name -> body text.
function functions(source) {
  const fns = new Map();
  for (const m of source.matchAll(/\bfn\s+(\w+)\s*\(/g)) {
    let i = source.indexOf("{", m.index);
    const start = i;
    for (let depth = 0; i < source.length; i++) {
      if (source[i] === "{") depth++;
      else if (source[i] === "}" && --depth === 0) break;
    }
    fns.set(m[1], source.slice(start, i + 1));
  }
  return fns;
}

// The override constants an entry point reaches through the functions it calls.
function reached(entry, fns, overrides) {
  const seen = new Set([entry]);
  const used = new Set();
  const todo = [entry];
  while (todo.length) {
    const body = fns.get(todo.pop()) ?? "";
    for (const [word] of body.matchAll(/\b[A-Za-z_]\w*\b/g)) {
      if (overrides.has(word)) used.add(word);
      if (fns.has(word) && !seen.has(word)) {
        seen.add(word);
        todo.push(word);
      }
    }
  }
  return [...used];
}

// Every combination of the values of `names`, as pipeline constants.
function combinations(names, kinds) {
  let out = [{}];
  for (const name of names) {
    const values = kinds.get(name) === "bool" ? [0, 1] : VALUES[name];
    if (!values) throw new Error(`override ${name}: no values listed`);
    out = out.flatMap((c) => values.map((v) => ({ ...c, [name]: v })));
  }
  return out;
}

async function checkShaders(device) {
  let passed = 0;
  let failed = 0;
  for (const [name, source] of shaders()) {
    const fail = (why) => {
      failed++;
      say(`FAIL shader ${name}: ${why}`);
    };
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ label: name, code: source });
    const info = await module.getCompilationInfo();
    const scoped = await device.popErrorScope();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length || scoped) {
      fail(errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ") || scoped.message);
      continue;
    }
    const kinds = new Map(
      [...source.matchAll(/^override\s+(\w+)\s*:\s*(\w+)/gm)].map((m) => [m[1], m[2]]),
    );
    const fns = functions(source);
    const entries = [...source.matchAll(/@compute[^;{]*?fn\s+(\w+)/g)].map((m) => m[1]);
    let pipelines = 0;
    let why = null;
    for (const entry of entries) {
      let combos;
      try {
        combos = combinations(reached(entry, fns, kinds), kinds);
      } catch (e) {
        why = e.message;
        break;
      }
      for (const constants of combos) {
        try {
          await device.createComputePipelineAsync({
            label: `${name}::${entry}`,
            layout: "auto",
            compute: { module, entryPoint: entry, constants },
          });
          pipelines++;
        } catch (e) {
          why = `${entry} ${JSON.stringify(constants)}: ${e.message}`;
          break;
        }
      }
      if (why) break;
    }
    if (why || entries.length === 0) {
      fail(why ?? "no entry point found");
    } else {
      passed++;
      say(`ok shader ${name}: ${entries.length} entry points, ${pipelines} pipelines`);
    }
  }
  return [passed, failed];
}

async function main() {
  await init();
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
  if (!adapter) {
    say("FAIL no WebGPU adapter (navigator.gpu missing or requestAdapter returned null)");
    say("0 passed, 1 failed");
    return;
  }
  const requiredLimits = {};
  for (const key in adapter.limits) requiredLimits[key] = adapter.limits[key];
  const device = await adapter.requestDevice({ requiredLimits });
  const [shadersPassed, shadersFailed] = await checkShaders(device);
  device.destroy();
  let passed = shadersPassed;
  let failed = shadersFailed;
  try {
    const [p, f] = await run_tests();
    passed += p;
    failed += f;
  } catch (e) {
    say(`FAIL library suite: ${e}`);
    failed++;
  }
  say(`${passed} passed, ${failed} failed`);
}

main().catch((e) => {
  say(`FAIL page: ${e?.stack ?? e}`);
  say("0 passed, 1 failed");
});
