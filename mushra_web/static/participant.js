// The participant's page. It knows button numbers only: the server keeps which condition sits behind which button.
const slug = decodeURIComponent(location.pathname.split('/')[2] || '');
const api = (path) => `/e/${encodeURIComponent(slug)}/api/${path}`;
const $ = (id) => document.getElementById(id);

// A random id: base64url of n random bytes.
function randomId(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// The key this browser keeps for this test and sends with every join: a join whose answer (or cookie) was lost is
// then known as this browser's, and its retry continues the same participant.
function browserKey() {
  const name = `mushra-key-${slug}`;
  try {
    let key = localStorage.getItem(name);
    if (!key) { key = randomId(24); localStorage.setItem(name, key); }
    return key;
  } catch {
    return randomId(24); // storage blocked: this page's own key
  }
}

const S = {
  info: null, state: null, trial: null, ctx: null, node: null, waveform: null, booted: null,
  ratings: [], refPlays: 0, switches: 0, cur: -1, playing: false, pos: 0,
  loop: {enabled: false, start: 0, end: 0}, saveTimer: null, saving: false, dirty: false,
  listenSince: null, test: null,
  // saves: this page's id and its own save counter, and the stored version its ratings are built on
  tab: randomId(16), seq: 0, version: 0,
  readyAt: 0, readyTimer: null, // when the server lets this trial go on (its minimum listening time)
};

function show(id) {
  for (const s of ['welcome', 'trial', 'done', 'error']) $(s).hidden = s !== id;
}

function fail(text) {
  $('error-text').textContent = text;
  show('error');
}

async function call(method, path, body) {
  let res;
  try {
    res = await fetch(api(path), {
      method, credentials: 'same-origin',
      headers: body === undefined ? {} : {'Content-Type': 'application/json'},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    // the browser's own words ("Failed to fetch") say nothing to a listener
    throw new Error('the server cannot be reached at the moment; check your internet connection');
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(typeof data.detail === 'string' ? data.detail : (data.detail?.message || res.statusText));
    err.status = res.status;
    err.detail = data.detail;
    throw err;
  }
  return data;
}

function band(v) {
  for (const [low, name] of S.state.scale) if (v >= low) return name;
  return 'Bad';
}

// ---------- start and resume ----------

// What the welcome page says, once the server has told it about the test and about this browser's participant.
// A closed test says so first, with nothing to click (a participant who finished can still see their code).
async function boot() {
  try {
    S.info = await call('GET', 'info'); // title, instructions and rate: shown before anyone joins
    describe(S.info);
    try {
      S.state = await call('GET', 'state');
    } catch (e) {
      if (e.status !== 401) throw e;
    }
  } catch (e) {
    fail(e.message);
    return;
  }
  const st = S.state;
  if (st?.finished) {
    $('welcome-status').textContent = 'You have completed this test.';
    $('start').textContent = 'Show my completion code';
  } else if (S.info.status !== 'open') {
    $('welcome-status').textContent = st
      ? 'This test has closed: nothing more can be rated. The ratings you made are kept. Thank you for taking part.'
      : 'This test is closed: it takes no more participants. Thank you for your interest.';
    $('start').hidden = true;
  } else if (st) {
    $('welcome-status').textContent = `Welcome back: you are at trial ${st.position + 1} of ${st.n_trials}.`;
    $('start').textContent = 'Continue';
  }
}

function describe(about) {
  $('title').textContent = about.title;
  $('instructions').textContent = about.instructions;
  document.title = about.title;
}

// A call that is retried while the server cannot be reached or is busy, saying so on the welcome page.
async function patiently(fn) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!transient(e) || attempt >= 6) throw e;
      $('welcome-status').textContent = `${e.message}; trying again…`;
      await new Promise((r) => setTimeout(r, Math.min(8000, 500 * 2 ** attempt)));
    }
  }
}

async function start() {
  $('start').disabled = true;
  await S.booted; // a click made while the page was still asking the server counts once it has answered
  if (!S.info || $('start').hidden) return; // the welcome page says why (an error, a closed test)
  const params = Object.fromEntries(new URLSearchParams(location.search));
  try {
    // the audio context is made at the stimuli's own rate (no resampling in the browser), so that the rate
    // reported at join is the one the sounds play at; the click lets it start
    S.ctx = S.ctx || new AudioContext({latencyHint: 'interactive', sampleRate: S.info.sample_rate});
    await S.ctx.resume();
    const env = {sampleRate: S.ctx.sampleRate, baseLatency: S.ctx.baseLatency, outputLatency: S.ctx.outputLatency || 0,
                 maxChannelCount: S.ctx.destination.maxChannelCount};
    // the same key on every try: a retry after a lost answer continues the participant that the lost one made
    const key = browserKey();
    S.state = await patiently(() => call('POST', 'join', {params, client_key: key, audio_env: env}));
    describe(S.state);
    if (S.state.finished) { finish(S.state.completion); return; }
    await S.ctx.audioWorklet.addModule('/static/engine-worklet.js');
    S.node = new AudioWorkletNode(S.ctx, 'mushra-engine', {
      numberOfInputs: 0, outputChannelCount: [S.state.channels],
      processorOptions: {channels: S.state.channels, crossfadeMs: S.state.crossfade_ms},
    });
    S.node.connect(S.ctx.destination);
    S.node.port.onmessage = (e) => engineMessage(e.data);
    if (S.state.testhook) S.test = window.__mushraTest = {taps: [], scheduled: [], ctx: S.ctx, node: S.node, state: S,
      tap: (on) => S.node.port.postMessage({cmd: 'tap', on})};
    await loadTrial(S.state.position);
  } catch (e) {
    $('start').disabled = false;
    fail(e.message);
  }
}

// ---------- the engine ----------

function engineMessage(m) {
  if (m.type === 'pos') {
    S.pos = m.pos;
    drawWave();
  } else if (m.type === 'tap') {
    S.test?.taps.push(m);
  } else if (m.type === 'scheduled') {
    S.test?.scheduled.push(m);
  }
}

function send(msg) { S.node.port.postMessage(msg); }

function accountListening() {
  if (S.listenSince !== null && S.cur > 0) S.ratings[S.cur - 1].listen_ms += Math.round(performance.now() - S.listenSince);
  S.listenSince = S.playing ? performance.now() : null;
}

function select(source) { // 0 = reference, 1..N = buttons
  accountListening();
  if (S.cur !== source && S.playing) S.switches++;
  S.cur = source;
  S.playing = true;
  S.listenSince = performance.now();
  if (source === 0) S.refPlays++; else S.ratings[source - 1].plays++;
  send({cmd: 'play', source});
  renderButtons();
  schedule();
}

function togglePlay() {
  if (S.playing) {
    accountListening();
    S.playing = false;
    S.listenSince = null;
    send({cmd: 'stop'});
    renderButtons();
  } else {
    select(S.cur < 0 ? 0 : S.cur);
  }
}

// ---------- trials ----------

// Shows a trial with its stored ratings; ``notice`` takes the place of the save status (say, after a conflict).
async function loadTrial(position, notice) {
  show('trial');
  delete $('trial').dataset.loaded;
  $('next').disabled = true;
  $('need').textContent = 'Loading sounds…';
  const t = await call('GET', `trials/${position}`);
  const asked = performance.now();
  S.trial = t;
  S.version = t.version;
  S.ratings = t.buttons.map((b) => ({button: b.index, score: b.score, plays: b.plays, listen_ms: b.listen_ms,
                                      n_moves: b.n_moves}));
  S.refPlays = t.reference_plays; S.switches = t.n_switches;
  S.cur = -1; S.playing = false; S.listenSince = null;
  const urls = [t.reference_url, ...t.buttons.map((b) => b.url)];
  const buffers = await Promise.all(urls.map(async (u) => {
    const res = await fetch(u, {credentials: 'same-origin'});
    if (!res.ok) throw new Error(`could not load a sound (${res.status})`);
    return S.ctx.decodeAudioData(await res.arrayBuffer());
  }));
  const length = t.n_frames;
  const sources = buffers.map((b) => Array.from({length: b.numberOfChannels}, (_, c) => {
    const d = b.getChannelData(c);
    const out = new Float32Array(length);
    out.set(d.subarray(0, Math.min(d.length, length)));
    return out;
  }));
  S.waveform = peaks(sources[0][0]);
  send({cmd: 'load', sources, length});
  S.loop = t.loop ? {...t.loop} : {enabled: false, start: 0, end: length};
  applyLoop(false);
  $('progress-text').textContent = `Trial ${position + 1} of ${t.n_trials}`;
  $('progress').max = t.n_trials; $('progress').value = position;
  $('training-flag').hidden = !t.is_training;
  renderConditions();
  // the server's clock for this trial started with its first sound sent: before this page asked, or just now
  const since = t.listened_seconds === null ? performance.now() : asked - 1000 * t.listened_seconds;
  S.readyAt = since + 1000 * t.min_seconds;
  $('save-status').textContent = notice || (t.version > 0 ? 'Saved ✓' : 'Nothing rated yet');
  $('need').textContent = '';
  $('trial').dataset.loaded = String(position);
  updateNext();
}

// The rating area is one grid: a column for the scale (labels, and the Reference button under them) and one fixed
// column per sound (value, slider, button). Band lines and labels are placed by the same rule as the slider thumb's
// centre, --v giving the value, so that a line at 40 is exactly where a click rates 40 (see style.css).
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function bandLines(box) {
  for (let v = 0; v <= 100; v += 20) {
    const line = el('div', 'line');
    line.dataset.v = String(v);
    line.style.setProperty('--v', String(v));
    box.appendChild(line);
  }
}

function renderConditions() {
  const box = $('rating');
  box.innerHTML = '';
  box.appendChild(el('div', 'corner'));
  const scale = el('div', 'scale');
  scale.id = 'scale';
  scale.setAttribute('aria-hidden', 'true');
  bandLines(scale);
  for (const [low, name] of S.state.scale) {
    const label = el('div', 'label', name);
    label.dataset.v = String(low);
    label.style.setProperty('--v', String(low));
    scale.appendChild(label);
  }
  box.appendChild(scale);
  const ref = el('button', 'play ref');
  ref.append(el('span', 'long', 'Reference'), el('span', 'short', 'Ref'));  // phones have room for the short one
  Object.assign(ref, {type: 'button', id: 'btn-ref'});
  ref.setAttribute('aria-label', 'Play the reference');
  ref.addEventListener('click', () => select(0));
  box.appendChild(ref);
  S.ratings.forEach((r, i) => {
    const value = el('div', 'value');
    value.id = `value-${i}`;
    value.append(el('span', 'num'), el('span', 'band'));
    const track = el('div', 'track');
    track.id = `track-${i}`;
    bandLines(track);
    const slider = document.createElement('input');
    Object.assign(slider, {type: 'range', min: 0, max: 100, step: 1, id: `slider-${i}`});
    slider.setAttribute('aria-label', `Rating of sound ${i + 1}`);
    slider.addEventListener('input', () => rate(i, Number(slider.value)));
    track.appendChild(slider);
    const btn = el('button', 'play', String(i + 1));
    Object.assign(btn, {type: 'button', id: `btn-${i}`});
    btn.setAttribute('aria-label', `Play sound ${i + 1}`);
    btn.addEventListener('click', () => select(i + 1));
    box.append(value, track, btn);
    paintSlider(i);
  });
  renderButtons();
}

function paintSlider(i) {
  const r = S.ratings[i];
  const slider = $(`slider-${i}`);
  const value = $(`value-${i}`);
  const rated = r.score !== null && r.score !== undefined;
  slider.classList.toggle('unset', !rated);
  // unrated: no thumb, no fill, a dashed track and "not rated"; the value under the hidden thumb is only where
  // keyboard steps start from
  slider.value = rated ? r.score : 50;
  slider.setAttribute('aria-valuetext', rated ? `${r.score}, ${band(r.score)}` : 'not rated');
  value.querySelector('.num').textContent = rated ? String(r.score) : '–';
  value.querySelector('.band').textContent = rated ? band(r.score) : 'not rated';
}

function renderButtons() {
  $('btn-ref')?.classList.toggle('active', S.playing && S.cur === 0);
  S.ratings.forEach((r, i) => {
    const b = $(`btn-${i}`);
    b.classList.toggle('active', S.playing && S.cur === i + 1);
    b.classList.toggle('played', r.plays > 0);
  });
  $('play').textContent = S.playing ? 'Stop' : 'Play';
  updateNext();
}

function rate(i, v) {
  const r = S.ratings[i];
  r.score = v;
  r.n_moves++;
  paintSlider(i);
  schedule();
  updateNext();
}

function missing() {
  const unplayed = S.ratings.filter((r) => r.plays < 1).map((r) => r.button + 1);
  const unrated = S.ratings.filter((r) => r.score === null || r.score === undefined).map((r) => r.button + 1);
  return {unplayed: S.trial.require.play_all ? unplayed : [], unrated: S.trial.require.rate_all ? unrated : [],
          noneAt100: S.trial.require.one_at_100 && !S.ratings.some((r) => r.score === 100)};
}

function updateNext() {
  if (!S.trial) return;
  const m = missing();
  const parts = [];
  if (m.unplayed.length) parts.push(`play sound ${m.unplayed.join(', ')}`);
  if (m.unrated.length) parts.push(`rate sound ${m.unrated.join(', ')}`);
  if (m.noneAt100) parts.push('rate at least one sound 100 (the hidden reference should be)');
  const wait = Math.ceil((S.readyAt - performance.now()) / 1000);
  clearTimeout(S.readyTimer);
  if (wait > 0) {
    parts.push(`keep listening for ${wait} s more`);
    S.readyTimer = setTimeout(updateNext, 1000);
  }
  $('next').disabled = parts.length > 0;
  $('need').textContent = parts.length ? `Still to do: ${parts.join('; ')}.` : '';
}

// ---------- autosave ----------

function payload() {
  accountListening();
  S.seq++;
  return {seq: S.seq, tab: S.tab, base: S.version,
          ratings: S.ratings.map((r) => ({button: r.button, score: r.score ?? null, plays: r.plays,
                                          listen_ms: r.listen_ms, n_moves: r.n_moves})),
          reference_plays: S.refPlays, n_switches: S.switches,
          loop: S.loop.enabled ? {enabled: true, start: S.loop.start, end: S.loop.end} : null};
}

function schedule() {
  S.dirty = true;
  $('save-status').textContent = 'Saving…';
  clearTimeout(S.saveTimer);
  S.saveTimer = setTimeout(save, 250);
}

// A failure worth retrying: the server could not be reached, or answered that it is busy or broken.
const transient = (e) => e.status === undefined || e.status >= 500 || e.status === 408 || e.status === 429;
// The server's answer that another tab or window has saved this trial since this page loaded it.
const conflicted = (e) => e.status === 409 && e.detail?.conflict === true;

// Another page saved (or submitted) this trial: nothing of this page's was stored, so say so and show what is.
async function reloadStored() {
  clearTimeout(S.saveTimer);
  S.dirty = false;
  if (S.playing) togglePlay();
  const notice = 'Changed in another tab or window: this page now shows the stored ratings';
  S.state = await call('GET', 'state');
  if (S.state.position >= S.state.n_trials) {
    finish(await call('POST', 'finish'));
  } else {
    await loadTrial(S.state.position, notice);
  }
}

async function save(attempt = 0) {
  if (S.saving) { S.saveTimer = setTimeout(() => save(attempt), 100); return; }
  S.saving = true; S.dirty = false;
  const trial = S.trial;
  try {
    const res = await call('PUT', `trials/${trial.position}`, payload());
    if (S.trial !== trial) return; // an answer about a trial this page has left (its own late save)
    if (res.saved) {
      S.version = res.version;
      if (!S.dirty) $('save-status').textContent = 'Saved ✓';
    } else {
      await reloadStored(); // a newer save from this page is stored than this one: show what is
    }
  } catch (e) {
    if (S.trial !== trial) return;
    if (conflicted(e)) {
      await reloadStored();
    } else if (e.status === 403) {
      fail(e.message); // the test has closed
    } else if (transient(e)) {
      S.dirty = true;
      $('save-status').textContent = `Not saved (${e.message}); retrying…`;
      clearTimeout(S.saveTimer);
      S.saveTimer = setTimeout(() => save(attempt + 1), Math.min(10000, 500 * 2 ** attempt));
    } else {
      S.dirty = true;
      $('save-status').textContent = `Not saved: ${e.message}`;
    }
  } finally {
    S.saving = false;
  }
}

async function next() {
  $('next').disabled = true;
  clearTimeout(S.saveTimer);
  if (S.playing) togglePlay();
  try {
    S.state = await call('POST', `trials/${S.trial.position}/submit`, payload());
  } catch (e) {
    if (conflicted(e)) { await reloadStored(); return; }
    if (e.status === 403) { fail(e.message); return; }
    if (e.detail?.wait_seconds) S.readyAt = performance.now() + 1000 * e.detail.wait_seconds;
    // nothing of a refused or lost submit is stored: the autosave takes the ratings over until they are
    S.dirty = true;
    clearTimeout(S.saveTimer);
    save();
    updateNext();
    $('need').textContent = transient(e)
      ? `Could not go on (${e.message}). Your ratings are kept and saved as soon as the server answers; then ` +
        'press Next again.'
      : e.message;
    return;
  }
  if (S.state.position < S.state.n_trials) {
    await loadTrial(S.state.position);
  } else {
    finish(await call('POST', 'finish'));
  }
}

const PLATFORMS = {prolific: 'Prolific', mturk: 'Mechanical Turk'};

function finish(completion) {
  if (completion.redirect_url) {
    location.assign(completion.redirect_url);
    return;
  }
  show('done');
  $('code').textContent = completion.code;
  const platform = PLATFORMS[S.state?.crowd_platform];
  $('done-text').textContent = platform
    ? `All your ratings are saved. To confirm that you took part, enter this completion code on ${platform}.`
    : 'All your ratings are saved. The code below shows that you took part: if the people who invited you ask ' +
      'for a completion code, give them this one. There is nothing more to do; you can close this page.';
}

// ---------- waveform and loop region ----------

function peaks(data) {
  const n = 1000;
  const out = new Float32Array(n * 2);
  const step = data.length / n;
  for (let i = 0; i < n; i++) {
    let lo = 0, hi = 0;
    for (let j = Math.floor(i * step); j < Math.floor((i + 1) * step); j++) {
      if (data[j] < lo) lo = data[j];
      if (data[j] > hi) hi = data[j];
    }
    out[2 * i] = lo; out[2 * i + 1] = hi;
  }
  return out;
}

function drawWave() {
  const c = $('wave');
  if (!S.waveform || c.offsetParent === null) return;
  const w = c.width = c.clientWidth, h = c.height = c.clientHeight;
  const g = c.getContext('2d');
  const len = S.trial.n_frames;
  if (S.loop.enabled) {
    g.fillStyle = 'rgba(31,95,191,0.18)';
    g.fillRect(S.loop.start / len * w, 0, (S.loop.end - S.loop.start) / len * w, h);
  }
  g.fillStyle = '#555';
  const n = S.waveform.length / 2;
  for (let x = 0; x < w; x++) {
    const i = Math.floor(x / w * n);
    const lo = S.waveform[2 * i], hi = S.waveform[2 * i + 1];
    g.fillRect(x, (1 - hi) * h / 2, 1, Math.max(1, (hi - lo) * h / 2));
  }
  g.fillStyle = '#e08a00';
  g.fillRect(S.pos / len * w, 0, 2, h);
}

function applyLoop(save = true) {
  const len = S.trial.n_frames;
  const min = Math.round(S.state.min_loop_s * S.state.sample_rate);
  let {start, end} = S.loop;
  start = Math.max(0, Math.min(start, len - min));
  end = Math.max(start + min, Math.min(end, len));
  S.loop.start = start; S.loop.end = end;
  $('loop-on').checked = S.loop.enabled;
  const sr = S.state.sample_rate;
  $('loop-text').textContent = S.loop.enabled ? `${(start / sr).toFixed(2)} s – ${(end / sr).toFixed(2)} s` : 'whole sound';
  send({cmd: 'loop', enabled: S.loop.enabled, start, end});
  drawWave();
  if (save) schedule();
}

function setupWave() {
  const c = $('wave');
  let down = null;
  const frameAt = (ev) => {
    const r = c.getBoundingClientRect();
    return Math.round(Math.max(0, Math.min(1, (ev.clientX - r.left) / r.width)) * S.trial.n_frames);
  };
  c.addEventListener('pointerdown', (ev) => { c.setPointerCapture(ev.pointerId); down = frameAt(ev); });
  c.addEventListener('pointerup', (ev) => {
    if (down === null) return;
    const up = frameAt(ev);
    if (Math.abs(up - down) < S.state.sample_rate * 0.05) {
      send({cmd: 'seek', frame: down});
    } else {
      S.loop = {enabled: true, start: Math.min(up, down), end: Math.max(up, down)};
      applyLoop();
    }
    down = null;
  });
  $('loop-on').addEventListener('change', () => { S.loop.enabled = $('loop-on').checked; applyLoop(); });
}

// ---------- keyboard ----------

function keys(ev) {
  if (!S.trial || $('trial').hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key.toLowerCase();
  if (k === ' ') { ev.preventDefault(); togglePlay(); return; }
  if (k === 'r') { select(0); return; }
  if (/^[0-9]$/.test(k)) {
    const i = k === '0' ? 10 : Number(k);
    if (i <= S.ratings.length) { select(i); $(`slider-${i - 1}`).focus(); }
    return;
  }
  if (k === 'a') { S.loop = {enabled: true, start: S.pos, end: S.loop.end > S.pos ? S.loop.end : S.trial.n_frames}; applyLoop(); return; }
  if (k === 'b') { S.loop = {enabled: true, start: S.loop.start < S.pos ? S.loop.start : 0, end: S.pos}; applyLoop(); return; }
  if (k === 'l') { S.loop.enabled = !S.loop.enabled; applyLoop(); return; }
  if (k === 'n' && !$('next').disabled) next();
}

// leaving while ratings are not yet stored would lose them: the browser asks first
window.addEventListener('beforeunload', (ev) => { if (S.dirty || S.saving) ev.preventDefault(); });

window.addEventListener('DOMContentLoaded', () => {
  $('play').addEventListener('click', togglePlay);
  $('next').addEventListener('click', next);
  $('start').addEventListener('click', start);
  document.addEventListener('keydown', keys);
  setupWave();
  S.booted = boot();
});
