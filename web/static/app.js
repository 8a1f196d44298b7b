// The page's behaviour: settings from the URL or the form, the MNIST files fetched or picked,
// training through the wasm Engine (web/src/lib.rs) with live progress and loss, and a drawing
// pad classified with the current weights. For automation (web/test.sh): the URL parameters,
// `#status` (the latest line printed), `document.body.dataset.state` (idle, training, done,
// error) and `window.page` (`paint` a 28×28 image into the pad and classify it; the `engine`).
import init, { Engine, recipe_defaults } from './web.js';

const FILES = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];
// The native binaries' defaults, in Engine.configure's order: the tutorial's recipe, which a
// network with its own (fast_cnn) overrides in part (recipe_defaults); an empty learning rate or
// momentum means the optimizer's default, an empty limit every image.
const DEFAULTS = { network: 'simple_cnn', epochs: '10', 'batch-size': '64', optimizer: 'sgd', lr: '', momentum: '',
                   schedule: 'constant', 'label-smoothing': '0', seed: '1', 'limit-train': '', 'limit-test': '' };
const RECIPE = ['epochs', 'batch-size', 'optimizer', 'lr', 'momentum', 'schedule', 'label-smoothing'];
const NO_WEBGPU = 'This browser does not offer WebGPU (navigator.gpu is missing), which the engine runs on. ' +
  'WebGPU is in Chrome and Edge 113 or later (Windows, macOS, ChromeOS; Android 121 or later), Safari 26, and ' +
  'Firefox 141 or later on Windows; elsewhere it may need a flag (chrome://flags/#enable-unsafe-webgpu), and ' +
  'it needs a page served over https or from localhost.';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const form = $('settings');
const dataUrl = (params.get('data') || 'data').replace(/\/+$/, '');
let engine = null;
let losses = [];

function setState(state) { document.body.dataset.state = state; }

// A line as the native binaries print it: shown in #status and kept in the log.
function print(line) {
  $('status').textContent = line;
  $('log').textContent += line + '\n';
  console.log(line);
}

function fail(message) {
  setState('error');
  print('error: ' + message);
}

function errorText(e) { return e && e.message ? e.message : String(e); }

// The fields' defaults for `network`: DEFAULTS with the network's own recipe over them.
function defaultsFor(network) {
  const fields = { ...DEFAULTS };
  try {
    // Only the fields the page has (the binaries' other defaults, such as --augment, stay theirs).
    for (const [name, value] of recipe_defaults(network)) if (name in fields) fields[name] = value;
  } catch (e) {
    // An unknown network keeps the tutorial's; the run refuses it by name.
  }
  return fields;
}

function fillSettings() {
  // A value the URL asks for that a list lacks stays as given, so the run refuses it by name.
  for (const select of form.querySelectorAll('select')) {
    const asked = params.get(select.name);
    if (asked !== null && !Array.from(select.options).some((o) => o.value === asked)) select.add(new Option(asked));
  }
  const fields = defaultsFor(params.get('network') || DEFAULTS.network);
  for (const [name, value] of Object.entries(fields)) {
    form.elements[name].value = params.has(name) ? params.get(name) : value;
  }
  // Another network brings its own recipe into the form.
  form.elements.network.onchange = () => {
    const own = defaultsFor(form.elements.network.value);
    for (const name of RECIPE) form.elements[name].value = own[name];
  };
  $('data-url').textContent = dataUrl + '/';
}

function settings() {
  const value = (name) => form.elements[name].value;
  return Object.keys(DEFAULTS).map(value);
}

async function fetchFile(name) {
  const url = `${dataUrl}/${name}.gz`;
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: could not be fetched (${errorText(e)})`);
  }
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText || 'error'}`);
  return new Uint8Array(await response.arrayBuffer());
}

// The four files, picked (matched by their standard names) or fetched.
async function dataFiles() {
  const picked = Array.from($('data-files').files);
  if (picked.length === 0) {
    const fetched = await Promise.allSettled(FILES.map(fetchFile));
    const failed = fetched.filter((f) => f.status === 'rejected').map((f) => errorText(f.reason));
    if (failed.length) {
      throw new Error(`${failed.join('; ')}. Put the four MNIST .gz files in ${dataUrl}/ beside the page, ` +
                      'give ?data=URL, or pick them above');
    }
    return { names: FILES.map((f) => `${dataUrl}/${f}.gz`), bytes: fetched.map((f) => f.value) };
  }
  const chosen = FILES.map((f) => picked.find((p) => p.name === f || p.name === f + '.gz'));
  const missing = FILES.filter((f, i) => !chosen[i]);
  if (missing.length) {
    throw new Error(`the picked files lack ${missing.join(', ')} (each as NAME.gz or NAME)`);
  }
  const bytes = await Promise.all(chosen.map(async (f) => new Uint8Array(await f.arrayBuffer())));
  return { names: chosen.map((f) => f.name), bytes };
}

function drawLosses(epochs) {
  const c = $('loss'), g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = '#999';
  g.strokeRect(0.5, 0.5, c.width - 1, c.height - 1);
  if (losses.length === 0) return;
  const top = Math.max(...losses.map((p) => p[1])) * 1.05;
  g.fillStyle = '#555';
  g.font = '11px sans-serif';
  g.fillText(`training loss (max ${top.toFixed(3)}) over ${epochs} epoch(s)`, 6, 13);
  const at = ([x, y]) => [(x / epochs) * (c.width - 8) + 4, c.height - 4 - (y / top) * (c.height - 24)];
  g.strokeStyle = g.fillStyle = '#d03b3b';
  g.beginPath();
  losses.forEach((p, i) => (i ? g.lineTo(...at(p)) : g.moveTo(...at(p))));
  g.stroke();
  losses.forEach((p) => { g.beginPath(); g.arc(...at(p), 2.5, 0, 2 * Math.PI); g.fill(); });
}

// The controls that would change a run under way.
function lockRun(locked) {
  for (const id of ['train', 'weights-file', 'data-files']) $(id).disabled = locked;
  for (const field of form.elements) field.disabled = locked;
}

async function train() {
  lockRun(true);
  setState('training');
  losses = [];
  try {
    engine.configure(...settings());
    const epochs = Number(form.elements.epochs.value);
    print('loading the MNIST files…');
    const { names, bytes } = await dataFiles();
    print(engine.load_data(names, bytes));
    print(engine.build());
    drawLosses(Math.max(epochs, 1));
    for (let epoch = 1; epoch <= epochs; epoch++) {
      const { line, trainLoss } = await engine.epoch(epoch, (step, steps, loss, rate) => {
        $('progress').max = steps;
        $('progress').value = step;
        $('rate').textContent = `epoch ${epoch}/${epochs}: step ${step}/${steps}, loss ${loss.toFixed(4)}, ${rate.toFixed(0)} images/s`;
        losses.push([epoch - 1 + step / steps, loss]);
        drawLosses(epochs);
      });
      $('progress').value = $('progress').max;
      losses.push([epoch, trainLoss]);
      drawLosses(epochs);
      print(line);
      $('download').disabled = false;
      await classifyPad();
    }
    setState('done');
  } catch (e) {
    fail(errorText(e));
  } finally {
    lockRun(false);
  }
}

// ---- the drawing pad

const pad = $('pad'), pen = pad.getContext('2d', { willReadFrequently: true });
let drawing = false, inked = false;

function clearPad() {
  pen.fillStyle = '#000';
  pen.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  $('prediction').textContent = '?';
  $('prediction').dataset.digit = '';
  $('bars').textContent = '';
}

function padPoint(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  pen.beginPath();
  pen.moveTo(...padPoint(e));
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  pen.strokeStyle = '#fff';
  pen.lineWidth = 20;
  pen.lineCap = pen.lineJoin = 'round';
  pen.lineTo(...padPoint(e));
  pen.stroke();
  inked = true;
});
pad.addEventListener('pointerup', () => { drawing = false; classifyPad(); });
pad.addEventListener('pointercancel', () => { drawing = false; });

function showDigit(digit) {
  const g = $('digit').getContext('2d'), image = g.createImageData(28, 28);
  digit.forEach((v, i) => { image.data.set([v, v, v, 255], i * 4); });
  g.putImageData(image, 0, 0);
}

// Classifies what the pad holds; resolves to the predicted digit (null when nothing to do, or
// when a later drawing has been classified meanwhile).
let classifications = 0;
async function classifyPad() {
  if (!engine || !inked || !engine.model_network()) return null;
  const ticket = ++classifications;
  try {
    const pixels = pen.getImageData(0, 0, pad.width, pad.height);
    const { digit, probabilities } = await engine.predict(new Uint8Array(pixels.data.buffer), pad.width, pad.height);
    if (ticket !== classifications) return null;
    const best = probabilities.indexOf(Math.max(...probabilities));
    $('prediction').textContent = best;
    $('prediction').dataset.digit = best;
    showDigit(digit);
    $('bars').innerHTML = Array.from(probabilities, (p, d) =>
      `<div class="bar"><span>${d}</span><span style="width:${(p * 200).toFixed(1)}px"></span><span>${p.toFixed(3)}</span></div>`).join('');
    return best;
  } catch (e) {
    // A blank pad or a failed prediction is said where the prediction would be.
    $('prediction').textContent = '?';
    $('bars').textContent = errorText(e);
    return null;
  }
}

// Paints a 28×28 grey image (255 = ink) scaled to the pad, as if drawn, and classifies it.
async function paint(pixels) {
  const small = document.createElement('canvas');
  small.width = small.height = 28;
  const image = small.getContext('2d').createImageData(28, 28);
  Array.from(pixels).forEach((v, i) => { image.data.set([v, v, v, 255], i * 4); });
  small.getContext('2d').putImageData(image, 0, 0);
  clearPad();
  pen.imageSmoothingEnabled = true;
  pen.drawImage(small, 0, 0, pad.width, pad.height);
  inked = true;
  return classifyPad();
}

// ---- weights files

function download() {
  try {
    const blob = new Blob([engine.weights()], { type: 'application/octet-stream' });
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = 'model.safetensors';
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (e) {
    fail(errorText(e));
  }
}

async function loadWeights() {
  const file = $('weights-file').files[0];
  if (!file) return;
  try {
    const network = engine.load_weights(file.name, new Uint8Array(await file.arrayBuffer()));
    print(`${file.name}: weights of ${network} loaded; draw a digit`);
    $('download').disabled = false;
    await classifyPad();
  } catch (e) {
    fail(errorText(e));
  }
}

async function main() {
  let loadError = null;
  try {
    await init();
  } catch (e) {
    loadError = `the engine's WebAssembly could not be loaded: ${errorText(e)}`;
  }
  fillSettings(); // with the tutorial's recipe alone when the WebAssembly is missing
  clearPad();
  $('clear').onclick = clearPad;
  window.page = { paint, engine: () => engine };
  if (!navigator.gpu) return fail(NO_WEBGPU);
  if (loadError) return fail(loadError);
  try {
    engine = await Engine.open(params.get('limits') === 'adapter');
  } catch (e) {
    return fail(`could not open a WebGPU device: ${errorText(e)}. If the adapter's limits are below WebGPU's ` +
                `defaults, this browser or GPU cannot run the engine; try another browser or update the GPU driver.`);
  }
  print('adapter: ' + engine.adapter());
  try {
    const kernels = engine.compile_all();
    await engine.check();
    print(`${kernels} kernels compiled by the browser's WGSL compiler`);
  } catch (e) {
    return fail('a kernel does not compile in this browser: ' + errorText(e));
  }
  $('train').disabled = false;
  $('train').onclick = train;
  $('download').onclick = download;
  $('weights-file').onchange = loadWeights;
  if (params.get('autostart') === '1') await train();
}

main().catch((e) => fail(errorText(e)));
