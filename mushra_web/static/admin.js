// The admin page: progress, open/close, exports and the report. Every write carries the session's CSRF token.
const $ = (id) => document.getElementById(id);
let csrf = null;

async function call(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const res = await fetch(`/admin/api/${path}`, {method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(data.detail || res.statusText), {status: res.status});
  return data;
}

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  Object.assign(e, attrs);
  return e;
}

async function refresh() {
  const tests = await call('GET', 'experiments');
  const box = $('tests');
  box.innerHTML = '';
  for (const t of tests) {
    const s = el('section');
    s.append(el('h2', `${t.title} (${t.slug})`));
    s.append(el('p', `status ${t.status}; completed ${t.participants_completed}, active ${t.participants_active} ` +
      `(of whom ${t.participants_not_started} have rated nothing yet); trials submitted ${t.trials_submitted}; ` +
      `config sha256 ${t.config_sha256}`));
    s.append(el('p', 'raters per item (what allocation balances): ' +
      Object.entries(t.item_uses).map(([k, v]) => `${k}: ${v}`).join(', ')));
    const base = `/admin/api/experiments/${encodeURIComponent(t.slug)}`;
    for (const [label, href] of [['CSV', `${base}/export.csv`], ['Parquet', `${base}/export.parquet`],
                                 ['Report', `${base}/report`]]) {
      s.append(el('a', label, {href, target: '_blank'}), document.createTextNode(' '));
    }
    const toggle = el('button', t.status === 'open' ? 'Close test' : 'Open test', {type: 'button'});
    toggle.addEventListener('click', async () => {
      await call('POST', `experiments/${encodeURIComponent(t.slug)}/status`,
                 {status: t.status === 'open' ? 'closed' : 'open'});
      refresh();
    });
    s.append(toggle);
    s.append(participants(t));
    box.append(s);
  }
}

// Each participant, and for one still active a way to let another browser continue their session (a crowd id
// alone is not enough: say the participant wrote that their computer broke down).
function participants(t) {
  const box = el('details');
  box.append(el('summary', `participants (${t.participants.length})`));
  const list = el('ul');
  for (const p of t.participants) {
    const item = el('li', `${p.participant_id} ${p.status}` + (p.external_id_hash ? ` (id hash ${p.external_id_hash})` : ''));
    if (p.status === 'active') {
      const allow = el('button', 'Let another browser continue', {type: 'button'});
      allow.addEventListener('click', async () => {
        await call('POST', `experiments/${encodeURIComponent(t.slug)}/participants/${p.participant_id}/takeover`);
        allow.replaceWith(document.createTextNode(' - the next browser with this id may continue'));
      });
      item.append(' ', allow);
    }
    list.append(item);
  }
  box.append(list);
  return box;
}

async function boot() {
  try {
    const me = await call('GET', 'me');
    csrf = me.csrf;
    $('who').textContent = me.username;
    $('panel').hidden = false;
    await refresh();
  } catch (e) {
    $('login').hidden = false;
  }
}

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const r = await call('POST', 'login', {username: $('user').value, password: $('password').value});
    csrf = r.csrf;
    $('login').hidden = true;
    boot();
  } catch (e) {
    $('login-error').textContent = e.message;
  }
});
$('logout').addEventListener('click', async () => { await call('POST', 'logout'); location.reload(); });
boot();
