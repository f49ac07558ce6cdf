"""The app's one page: pick or upload a video, type a sentence, see the timeline and jump to the spans.

Plain HTML and a little JavaScript, no framework and nothing fetched from elsewhere; it talks to the JSON API
of :mod:`grounding.app.server` and shows each ``{"error": ...}`` in the page (``#message``).
"""

from __future__ import annotations

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 900px; color: #222; }
fieldset { border: 1px solid #ddd; margin-bottom: 1em; }
input[type=text] { width: 32em; }
#message { min-height: 1.4em; color: #b42318; }
#timeline { background: #fafafa; border: 1px solid #ddd; cursor: pointer; }
#spans button, #results button { font: inherit; margin: 0.2em; cursor: pointer; }
"""

SCRIPT = """
const $ = id => document.getElementById(id);
const WIDTH = 640;
function say(text) { $('message').textContent = text || ''; }
async function call(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (error) { body = {error: 'the server sent no answer (' + response.status + ')'}; }
  if (!response.ok) throw new Error(body.error || ('error ' + response.status));
  return body;
}
async function loadVideos(selected) {
  const list = await call('/api/videos');
  $('video-select').innerHTML = list.videos.map(id => `<option value="${id}">${id}</option>`).join('');
  if (selected) $('video-select').value = selected;
  if ($('video-select').value) show($('video-select').value);
}
function show(id) { if ($('player').dataset.id !== id) { $('player').src = '/media/' + encodeURIComponent(id); $('player').dataset.id = id; } }
function seek(start) { const video = $('player'); video.currentTime = start; const p = video.play(); if (p) p.catch(() => {}); }
function draw(result) {
  const svg = $('timeline'); const d = result.duration; const peak = Math.max(...result.curve.scores, 1e-9);
  const x = t => (Math.max(0, Math.min(t, d)) / d * WIDTH).toFixed(2);
  let parts = result.spans.map((s, i) => `<rect class="span" x="${x(s.start)}" y="4" width="${Math.max(x(s.end) - x(s.start), 1)}" height="12" fill="#1f6feb" fill-opacity="${i ? 0.45 : 1}" data-seek="${s.start}"><title>${s.start.toFixed(1)}-${s.end.toFixed(1)} s, score ${s.score.toFixed(2)}</title></rect>`);
  const points = result.curve.times.map((t, i) => `${x(t)},${(24 + (1 - result.curve.scores[i] / peak) * 40).toFixed(2)}`).join(' ');
  parts.push(`<polyline points="${points}" fill="none" stroke="#d29922" stroke-width="1.5"/>`);
  svg.innerHTML = parts.join(''); svg.dataset.duration = d;
  $('spans').innerHTML = result.spans.map(s => `<button class="seek" data-seek="${s.start}">${s.start.toFixed(1)}-${s.end.toFixed(1)} s (${s.score.toFixed(2)})</button>`).join('');
}
document.addEventListener('click', event => {
  const target = event.target.closest('[data-seek]');
  if (target) { event.stopPropagation(); if (target.dataset.video) { show(target.dataset.video); $('video-select').value = target.dataset.video; } seek(parseFloat(target.dataset.seek)); }
});
$('timeline').addEventListener('click', event => {
  if (event.target.closest('[data-seek]')) return;
  const box = $('timeline').getBoundingClientRect();
  seek((event.clientX - box.left) / box.width * parseFloat($('timeline').dataset.duration || 0));
});
$('video-select').addEventListener('change', () => show($('video-select').value));
$('upload').addEventListener('change', async () => {
  const file = $('upload').files[0]; if (!file) return;
  const form = new FormData(); form.append('file', file);
  say('uploading and reading ' + file.name + ' ...');
  try { const added = await call('/api/upload', {method: 'POST', body: form}); say(''); await loadVideos(added.video_id); }
  catch (error) { say(error.message); }
});
$('ground-form').addEventListener('submit', async event => {
  event.preventDefault(); say('finding the moment ...');
  try {
    const result = await call('/api/ground', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({video_id: $('video-select').value, sentence: $('sentence').value, top_k: 5})});
    say(''); draw(result);
  } catch (error) { say(error.message); }
});
if ($('search-form')) $('search-form').addEventListener('submit', async event => {
  event.preventDefault(); say('searching ...');
  try {
    const result = await call('/api/rank', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({sentence: $('query').value, top_videos: 10})});
    say('');
    $('results').innerHTML = result.videos.map((v, i) => `<li>${v.video_id}` + (v.probability === null ? '' : ` p = ${v.probability.toFixed(2)}`) +
      (v.span && v.playable ? ` <button data-video="${v.video_id}" data-seek="${v.span.start}">${v.span.start.toFixed(1)}-${v.span.end.toFixed(1)} s</button>` : '') + '</li>').join('');
  } catch (error) { say(error.message); }
});
loadVideos().catch(error => say(error.message));
"""


def app_page(search: bool, max_upload_mb: float, max_seconds: float) -> str:
    """The page's HTML (the search box only when the app has an index)."""
    search_box = (
        '<fieldset><legend>Search the index</legend><form id="search-form">'
        '<input id="query" type="text" placeholder="a sentence, e.g. the red circle spins"> '
        '<button type="submit">Search</button></form><ol id="results"></ol></fieldset>'
    ) if search else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>grounding app</title>'
        f"<style>{STYLE}</style></head><body><h1>grounding</h1>"
        '<fieldset><legend>Video</legend><select id="video-select"></select> or upload: '
        f'<input id="upload" type="file" accept="video/*"> <small>(up to {max_upload_mb:g} MB and '
        f"{max_seconds:g} s)</small></fieldset>"
        '<video id="player" width="480" controls muted></video>'
        '<fieldset><legend>Find the moment</legend><form id="ground-form">'
        '<input id="sentence" type="text" placeholder="a sentence, e.g. the red circle spins"> '
        '<button type="submit">Find</button></form>'
        f'<svg id="timeline" width="640" height="70" role="img" aria-label="timeline"></svg>'
        '<div id="spans"></div></fieldset>'
        f'{search_box}<div id="message" role="alert"></div>'
        f"<script>{SCRIPT}</script></body></html>"
    )
