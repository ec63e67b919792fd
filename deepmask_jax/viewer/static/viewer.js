// The viewer page: uploads an image, asks the server for each model's
// results once, then draws them here. Every control redraws from the results
// the page already holds, without asking the server again.
'use strict';

const $ = (id) => document.getElementById(id);
const view = {models: [], image: null, picture: null, panels: [], request: 0};
const COMPILE_NOTE = ' (the first image compiles the model: up to a few ' +
    'minutes on a CPU)';

async function api(url, options) {
  const response = await fetch(url, options);
  let body;
  try {
    body = await response.json();
  } catch (error) {
    body = {error: `${response.status} ${response.statusText}`};
  }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function say(text, isError) {
  $('message').textContent = text;
  $('message').className = isError ? 'error' : '';
}

// Run lengths of a COCO compressed RLE string (pycocotools' rleFrString):
// alternating background and mask runs, in column-major pixel order.
function rleRuns(text) {
  const runs = [];
  let p = 0;
  while (p < text.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++;
      k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

// Writes `index` into owner[y * width + x] for each pixel of a mask.
function paintMask(owner, runs, index, height, width) {
  let p = 0;
  for (let r = 0; r < runs.length; r++) {
    if (r % 2 === 1) {
      let x = Math.floor(p / height), y = p % height;
      for (let n = runs[r]; n > 0; n--) {
        owner[y * width + x] = index;
        if (++y === height) { y = 0; x++; }
      }
    }
    p += runs[r];
  }
}

function controls() {
  return {
    topk: Number($('topk').value), threshold: Number($('threshold').value),
    masks: $('masks').checked, boxes: $('boxes').checked,
    opacity: Number($('opacity').value)};
}

// Indices of the results shown: score >= threshold, the best top-K.
function shownIndices(result, settings) {
  const shown = [];
  for (let i = 0; i < result.segm.length && shown.length < settings.topk; i++) {
    if (result.segm[i].score >= settings.threshold) shown.push(i);
  }
  return shown;
}

function tint(pixels, owner, colours, width, height, opacity) {
  const edge = Math.max(1, Math.round(Math.max(width, height) / 600));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x, o = owner[i];
      if (o < 0) continue;
      const onEdge =
          (x >= edge && owner[i - edge] !== o) ||
          (x + edge < width && owner[i + edge] !== o) ||
          (y >= edge && owner[i - edge * width] !== o) ||
          (y + edge < height && owner[i + edge * width] !== o);
      const t = onEdge ? 1 : opacity, c = colours[o];
      for (let j = 0; j < 3; j++) {
        pixels[4 * i + j] = Math.round((1 - t) * pixels[4 * i + j] + t * c[j]);
      }
    }
  }
}

function setDownload(link, records, fileName) {
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([JSON.stringify(records)],
                                           {type: 'application/json'}));
  link.download = fileName;
}

// Shows the canvas as large as its panel allows (small images scaled up).
function fit(panel) {
  const canvas = panel.canvas, room = panel.element.clientWidth - 18;
  const tall = Math.max(200, window.innerHeight - 200);
  const scale = Math.min(room / canvas.width, tall / canvas.height);
  canvas.style.width = `${Math.max(1, Math.floor(canvas.width * scale))}px`;
}

function redraw(panel) {
  const {canvas, result} = panel, picture = view.picture;
  if (!picture) return;
  const width = picture.naturalWidth, height = picture.naturalHeight;
  canvas.width = width;
  canvas.height = height;
  fit(panel);
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.drawImage(picture, 0, 0);
  panel.owner = null;
  if (!result) return;
  const settings = controls(), shown = shownIndices(result, settings);
  const owner = new Int32Array(width * height).fill(-1);
  for (let j = shown.length - 1; j >= 0; j--) {  // The best ends on top.
    paintMask(owner, result.runs[shown[j]], shown[j], height, width);
  }
  panel.owner = owner;
  if (settings.masks && shown.length) {
    const image = context.getImageData(0, 0, width, height);
    tint(image.data, owner, result.colours, width, height, settings.opacity);
    context.putImageData(image, 0, 0);
  }
  if (settings.boxes) {
    context.lineWidth = Math.max(1, Math.round(Math.max(width, height) / 500));
    for (const i of shown) {
      const [x, y, w, h] = result.bbox[i].bbox, c = result.colours[i];
      context.strokeStyle = `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
      context.strokeRect(x, y, w, h);
    }
  }
  panel.element.querySelector('.count').textContent = shown.length;
  const stem = view.image.name.replace(/\.[^.]*$/, '') + '_' + result.model;
  setDownload(panel.element.querySelector('.download'),
              shown.map((i) => result.segm[i]), `${stem}_proposals.json`);
  setDownload(panel.element.querySelector('.download-bbox'),
              shown.map((i) => result.bbox[i]), `${stem}_proposals_bbox.json`);
}

function redrawAll() {
  for (const name of ['topk', 'threshold', 'opacity']) {
    const digits = {topk: 0, threshold: 3, opacity: 2}[name];
    $(`${name}-value`).textContent = Number($(name).value).toFixed(digits);
  }
  view.panels.forEach(redraw);
}

function label(result, i) {
  const record = result.segm[i];
  const name = result.class_aware ? result.names[record.category_id] + ' ' : '';
  return `#${i + 1} ${name}${record.score.toFixed(3)}`;
}

function hover(panel, event) {
  const tooltip = $('tooltip'), canvas = panel.canvas;
  const box = canvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - box.left) * canvas.width / box.width);
  const y = Math.floor((event.clientY - box.top) * canvas.height / box.height);
  const inside = x >= 0 && y >= 0 && x < canvas.width && y < canvas.height;
  const o = panel.owner && inside ? panel.owner[y * canvas.width + x] : -1;
  tooltip.hidden = o < 0;
  if (o < 0) return;
  tooltip.textContent = label(panel.result, o);
  tooltip.style.left = `${event.clientX + 14}px`;
  tooltip.style.top = `${event.clientY + 10}px`;
}

function makePanel(model, index) {
  const element = document.createElement('div');
  element.className = 'panel';
  element.dataset.model = index;
  element.innerHTML =
      '<h2></h2><p class="status"></p>' +
      '<p><span class="count">0</span> shown of <span class="total">0</span>' +
      ' &middot; <a class="download">results JSON</a>' +
      '<a class="download-bbox">boxes JSON</a></p><canvas></canvas>';
  element.querySelector('h2').innerHTML = '<span></span> <small></small>';
  element.querySelector('h2 span').textContent = model.name;
  element.querySelector('h2 small').textContent = model.family;
  $('panels').appendChild(element);
  const panel = {model, index, element, result: null, owner: null,
                 canvas: element.querySelector('canvas')};
  panel.canvas.addEventListener('mousemove', (event) => hover(panel, event));
  panel.canvas.addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
  return panel;
}

function setStatus(panel, text, isError) {
  const status = panel.element.querySelector('.status');
  status.textContent = text;
  status.className = isError ? 'status error' : 'status';
}

async function runModel(panel, request) {
  const started = Date.now();
  const note = panel.model.warm ? '' : COMPILE_NOTE;
  const tick = () => setStatus(panel, `running the network... ` +
      `${Math.round((Date.now() - started) / 1000)} s${note}`);
  tick();
  const timer = setInterval(tick, 1000);
  try {
    const result = await api(
        `/api/result?image=${view.image.image}&model=${panel.index}`);
    if (request !== view.request) return;
    result.runs = result.segm.map((r) => rleRuns(r.segmentation.counts));
    panel.result = result;
    panel.model.warm = true;
    panel.element.querySelector('.total').textContent = result.segm.length;
    $('topk').max = Math.max(Number($('topk').max), result.segm.length);
    setStatus(panel, `network: ${result.seconds.toFixed(2)} s` +
        (result.compiled ? ' (this call compiled the model)' : ''));
    panel.element.dataset.ready = 'true';
    redraw(panel);
  } catch (error) {
    if (request === view.request) setStatus(panel, error.message, true);
  } finally {
    clearInterval(timer);
  }
}

async function showImage(info) {
  const request = ++view.request;
  view.image = info;
  const picture = new Image();
  picture.src = `/api/image?image=${info.image}`;
  await picture.decode();
  if (request !== view.request) return;
  view.picture = picture;
  say(`${info.name}: ${info.width} x ${info.height} pixels`);
  for (const panel of view.panels) {
    panel.result = null;
    delete panel.element.dataset.ready;
    panel.element.querySelector('.count').textContent = '0';
    panel.element.querySelector('.total').textContent = '0';
    redraw(panel);
  }
  for (const panel of view.panels) await runModel(panel, request);
}

async function openImage(loading, name) {
  say(`reading ${name}...`);
  try {
    await showImage(await loading);
  } catch (error) {
    say(error.message, true);
  }
}

function upload(file) {
  if (!file) return;
  openImage(api('/api/upload', {method: 'POST', body: file,
                           headers: {'X-File-Name': encodeURIComponent(file.name)}}),
       file.name);
}

async function start() {
  const state = await api('/api/state');
  view.panels = state.models.map(makePanel);
  if (state.images.length) {
    $('pick-label').hidden = false;
    state.images.forEach((name, i) => $('pick').add(new Option(name, i)));
  }
  $('file').addEventListener('change', () => upload($('file').files[0]));
  $('pick').addEventListener('change', () => {
    const index = $('pick').value;
    if (index !== '') {
      openImage(api(`/api/listed?index=${index}`, {method: 'POST'}),
           state.images[index]);
    }
  });
  for (const id of ['topk', 'threshold', 'masks', 'boxes', 'opacity']) {
    $(id).addEventListener('input', redrawAll);
  }
  window.addEventListener('resize', () => view.panels.forEach(fit));
  document.addEventListener('dragover', (event) => {
    event.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => {
    document.body.classList.remove('dragging');
  });
  document.addEventListener('drop', (event) => {
    event.preventDefault();
    document.body.classList.remove('dragging');
    upload(event.dataTransfer.files[0]);
  });
}

start().catch((error) => say(`the viewer could not start: ${error.message}`, true));
