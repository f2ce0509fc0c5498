// The imgdb web page: search by text or by image, browse results, watch
// the indexer. Plain JavaScript against the daemon's HTTP API
// (api-contract / schema/api/openapi.yaml); no build step, no external
// resources, so it works offline and under a 'self'-only CSP.
'use strict';

(() => {
  /** Results asked for per page (offset paging). */
  const PAGE = 40;
  /** Thumbnail edge asked of the daemon, in pixels. */
  const THUMB = 256;
  /** Typing settles this long before a query is sent. */
  const DEBOUNCE_MS = 200;
  /** With a token, EventSource cannot authenticate: poll instead. */
  const POLL_MS = 2000;
  const TOKEN_KEY = 'imgdb.token';

  const $ = (id) => document.getElementById(id);
  const el = {
    app: $('app'),
    q: $('q'),
    searchForm: $('search-form'),
    fileInput: $('file-input'),
    filters: $('filters'),
    filterForm: $('filter-form'),
    filterCount: $('filter-count'),
    roots: $('roots'),
    queryImage: $('query-image'),
    queryImageImg: $('query-image-img'),
    queryImageLabel: $('query-image-label'),
    queryImageClear: $('query-image-clear'),
    error: $('error'),
    errorText: $('error-text'),
    errorClose: $('error-close'),
    empty: $('empty'),
    results: $('results'),
    sentinel: $('sentinel'),
    more: $('more'),
    overlay: $('drop-overlay'),
    viewer: $('viewer'),
    viewerImg: $('viewer-img'),
    viewerTitle: $('viewer-title'),
    viewerDl: $('viewer-dl'),
    viewerSimilar: $('viewer-similar'),
    viewerOpen: $('viewer-open'),
    viewerClose: $('viewer-close'),
    tokenDialog: $('token-dialog'),
    tokenForm: $('token-form'),
    tokenInput: $('token-input'),
    status: {
      dot: $('status-dot'),
      images: $('status-images'),
      imagesUnit: $('status-images-unit'),
      indexing: $('status-indexing'),
      indexed: $('status-indexed'),
      queued: $('status-queued'),
      failed: $('status-failed'),
      failedWrap: $('status-failed-wrap'),
      box: $('status'),
    },
  };

  // ---------------------------------------------------------------- API

  let token = sessionStorage.getItem(TOKEN_KEY) || null;
  /** The pending token prompt, shared by every request that got a 401. */
  let tokenPrompt = null;
  /** The user declined to give a token: stop asking. */
  let tokenDeclined = false;

  /** An error answered by the API (`{"error": {"kind", "message"}}`). */
  class ApiError extends Error {
    constructor(status, kind, message) {
      super(message);
      this.status = status;
      this.kind = kind;
    }
  }

  async function errorOf(res) {
    let kind = 'http_' + res.status;
    let message = res.statusText || 'request failed';
    try {
      const body = await res.json();
      if (body && body.error) {
        kind = body.error.kind || kind;
        message = body.error.message || message;
      }
    } catch (_) { /* not JSON: keep the status line */ }
    return new ApiError(res.status, kind, message);
  }

  function askToken() {
    if (tokenPrompt) return tokenPrompt;
    if (tokenDeclined) return Promise.resolve(null);
    tokenPrompt = new Promise((resolve) => {
      el.tokenInput.value = '';
      el.tokenDialog.addEventListener('close', () => {
        const value = el.tokenInput.value.trim();
        tokenPrompt = null;
        if (el.tokenDialog.returnValue === 'ok' && value) {
          token = value;
          sessionStorage.setItem(TOKEN_KEY, token);
          resolve(token);
        } else {
          tokenDeclined = true;
          resolve(null);
        }
      }, { once: true });
      el.tokenDialog.returnValue = '';
      el.tokenDialog.showModal();
      el.tokenInput.focus();
    });
    return tokenPrompt;
  }

  /**
   * fetch() with the bearer token; a 401 asks for the token (once, shared
   * by concurrent requests) and retries. Resolves to an ok Response,
   * rejects with ApiError (or AbortError / TypeError from fetch).
   */
  async function api(path, options = {}) {
    for (;;) {
      const sent = token;
      const headers = new Headers(options.headers || {});
      if (sent) headers.set('Authorization', 'Bearer ' + sent);
      const res = await fetch(path, { ...options, headers });
      if (res.ok || res.status === 304) return res;
      if (res.status === 401) {
        if (sent && sent === token) {
          // The token we hold was refused: forget it, then ask again.
          token = null;
          sessionStorage.removeItem(TOKEN_KEY);
        }
        if (token && token !== sent) continue; // changed meanwhile
        if (await askToken()) {
          onTokenChanged();
          continue;
        }
      }
      throw await errorOf(res);
    }
  }

  async function apiJson(path, options) {
    const res = await api(path, options);
    return res.json();
  }

  // ------------------------------------------------------------- errors

  function showError(err) {
    let text;
    if (err instanceof ApiError) {
      text = err.kind === 'unauthorized'
        ? 'Unauthorized: the daemon needs a valid token (reload the page to enter one).'
        : `${err.message} (${err.kind})`;
    } else if (err instanceof TypeError) {
      text = 'Cannot reach the daemon: ' + err.message;
    } else {
      text = String(err && err.message ? err.message : err);
    }
    el.errorText.textContent = text;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.errorText.textContent = '';
  }

  el.errorClose.addEventListener('click', clearError);

  // ------------------------------------------------------------ helpers

  /** A path from the API: a string, or `{"bytes": BASE64}` when not UTF-8. */
  function pathText(path) {
    if (typeof path === 'string') return path;
    if (path && typeof path.bytes === 'string') {
      const raw = atob(path.bytes);
      const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
      return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    }
    return '';
  }

  function baseName(path) {
    const text = pathText(path);
    const parts = text.split(/[\\/]/);
    return parts[parts.length - 1] || text;
  }

  const numberFormat = new Intl.NumberFormat();
  const fmt = (n) => (typeof n === 'number' ? numberFormat.format(n) : '–');

  function fmtBytes(n) {
    if (typeof n !== 'number') return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function fmtTime(text) {
    const d = new Date(text);
    return isNaN(d) ? String(text || '–') : d.toLocaleString();
  }

  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('data')) node.setAttribute(k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // ------------------------------------------- images (with or without token)

  // Without a token the browser loads images itself (lazily, cached by
  // ETag). An <img> cannot send a header, so with a token each image is
  // fetched with it when it nears the viewport and shown from a blob: URL.
  const blobUrls = new Set();
  const lazyImages = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      lazyImages.unobserve(entry.target);
      loadWithToken(entry.target);
    }
  }, { rootMargin: '800px 0px' });

  async function loadWithToken(img) {
    const src = img.dataset.src;
    if (!src) return;
    try {
      const res = await api(src);
      const url = URL.createObjectURL(await res.blob());
      blobUrls.add(url);
      if (img.dataset.src === src) img.src = url;
      else { URL.revokeObjectURL(url); blobUrls.delete(url); }
    } catch (_) {
      img.closest('.thumb')?.classList.add('broken');
    }
  }

  function setImage(img, src, eager = false) {
    if (token) {
      img.removeAttribute('src');
      img.dataset.src = src;
      if (eager) loadWithToken(img);
      else lazyImages.observe(img);
    } else {
      delete img.dataset.src;
      img.src = src;
    }
  }

  function releaseImages() {
    lazyImages.disconnect();
    for (const url of blobUrls) URL.revokeObjectURL(url);
    blobUrls.clear();
  }

  // ------------------------------------------------------------- search

  /**
   * The current query: null (nothing asked), or
   * {kind: 'text', text} | {kind: 'image', file, url} | {kind: 'similar', id, name}.
   */
  let query = null;
  /** Bumped by every new query: a response of an older one is dropped. */
  let generation = 0;
  let controller = null;
  let offset = 0;
  let exhausted = false;
  let loading = false;
  /** Results shown, by id, for the larger view. */
  const shown = new Map();
  let lastStatus = null;

  function filterValue() {
    const form = el.filterForm.elements;
    const filter = {};
    const under = form.under.value.trim();
    const tag = form.tag.value.trim();
    const format = form.format.value;
    if (under) filter.under = under;
    if (tag) filter.tag = tag;
    if (format) filter.formats = [format];
    // Dates are the user's local days: after = from the start of that
    // day, before = up to (not including) the start of that day.
    const day = (v) => (v ? new Date(v + 'T00:00:00').toISOString().replace(/\.\d{3}Z$/, 'Z') : null);
    const after = day(form.after.value);
    const before = day(form.before.value);
    if (after) filter.modified_after = after;
    if (before) filter.modified_before = before;
    return filter;
  }

  function requestFor(q, filter, k, from, signal) {
    const hasFilter = Object.keys(filter).length > 0;
    if (q.kind === 'text') {
      const body = { text: q.text, k, offset: from };
      if (hasFilter) body.filter = filter;
      return apiJson('/v1/query', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        signal,
      });
    }
    if (q.kind === 'image') {
      const form = new FormData();
      form.append('image', q.file, q.file.name || 'pasted-image');
      const body = { k, offset: from };
      if (hasFilter) body.filter = filter;
      form.append('query', JSON.stringify(body));
      return apiJson('/v1/query', { method: 'POST', body: form, signal });
    }
    // similar: the dedicated endpoint, unless filters narrow it.
    if (!hasFilter) {
      return apiJson(`/v1/images/${q.id}/similar?k=${k}&offset=${from}`, { signal });
    }
    return apiJson('/v1/query', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ image_id: q.id, k, offset: from, filter }),
      signal,
    });
  }

  function clearResults() {
    releaseImages();
    el.results.replaceChildren();
    shown.clear();
  }

  function runQuery(q) {
    generation++;
    if (controller) controller.abort();
    controller = null;
    query = q;
    offset = 0;
    exhausted = false;
    loading = false;
    clearError();
    clearResults();
    // What the grid shows, for tests and styles: "text:…", "image:NAME", "similar:ID".
    el.results.dataset.query = !q ? '' : q.kind === 'text' ? 'text:' + q.text
      : q.kind === 'image' ? 'image:' + (q.file.name || '') : 'similar:' + q.id;
    el.results.dataset.state = q ? 'loading' : 'idle';
    window.scrollTo({ top: 0 });
    if (!q) {
      el.more.hidden = true;
      updateEmpty();
      return;
    }
    el.empty.hidden = true;
    loadMore();
  }

  async function loadMore() {
    if (!query || loading || exhausted) return;
    const mine = generation;
    loading = true;
    controller = controller || new AbortController();
    const signal = controller.signal;
    el.more.hidden = false;
    el.results.dataset.state = 'loading';
    try {
      const body = await requestFor(query, filterValue(), PAGE, offset, signal);
      if (mine !== generation) return; // a newer query owns the page now
      const results = Array.isArray(body.results) ? body.results : [];
      appendResults(results);
      offset += results.length;
      if (results.length < PAGE) exhausted = true;
    } catch (err) {
      if (mine !== generation || (err && err.name === 'AbortError')) return;
      exhausted = true;
      showError(err);
    } finally {
      if (mine === generation) {
        loading = false;
        el.results.dataset.state = el.error.hidden ? (exhausted ? 'done' : 'more') : 'error';
        el.more.hidden = true;
        updateEmpty();
        // A short first page may leave the sentinel in view: the observer
        // does not fire again for it, so look ourselves.
        if (!exhausted) requestAnimationFrame(checkSentinel);
      }
    }
  }

  function appendResults(results) {
    const fragment = document.createDocumentFragment();
    for (const r of results) {
      if (shown.has(r.id)) continue; // the same image twice across pages
      shown.set(r.id, r);
      fragment.append(card(r));
    }
    el.results.append(fragment);
  }

  function card(r) {
    // An imported row (LAION, say) has no local file: its caption names it.
    const name = r.source?.caption || baseName(r.path);
    const score = typeof r.score === 'number' ? r.score.toFixed(2) : '';
    const img = h('img', {
      alt: name,
      width: THUMB,
      height: THUMB,
      loading: 'lazy',
      decoding: 'async',
      draggable: 'false',
    });
    img.addEventListener('error', () => img.closest('.thumb')?.classList.add('broken'), { once: true });
    setImage(img, `/v1/images/${r.id}/thumbnail?size=${THUMB}`);
    const button = h('button', {
      type: 'button',
      class: 'card-button',
      title: pathText(r.path),
      'aria-label': `${name}, score ${score}`,
    },
    h('div', { class: 'thumb' }, img),
    h('div', { class: 'caption' },
      h('span', { class: 'name', text: name }),
      h('span', { class: 'score', dataTestid: 'score', text: score })));
    button.addEventListener('click', () => openViewer(r.id));
    return h('li', {
      class: 'card',
      dataTestid: 'result',
      dataId: String(r.id),
      dataRank: r.rank != null ? String(r.rank) : null,
      dataName: name,
    }, button);
  }

  function updateEmpty() {
    let text = '';
    const nothingIndexed = lastStatus && lastStatus.images === 0;
    if (loading) text = '';
    else if (!query) {
      text = nothingIndexed
        ? (lastStatus.queued > 0
          ? `Nothing indexed yet: ${fmt(lastStatus.queued)} files are queued for indexing.`
          : 'Nothing indexed yet. Start the daemon with --watch FOLDER to add a folder.')
        : 'Type to search, or drop or paste an image onto the page.';
    } else if (shown.size === 0 && el.error.hidden) {
      text = nothingIndexed ? 'Nothing indexed yet.' : 'No results.';
    }
    el.empty.textContent = text;
    el.empty.hidden = !text;
    el.empty.dataset.state = !text ? '' : (nothingIndexed ? 'nothing-indexed' : (query ? 'no-results' : 'idle'));
  }

  function checkSentinel() {
    if (!query || loading || exhausted) return;
    const top = el.sentinel.getBoundingClientRect().top;
    if (top < window.innerHeight + 600) loadMore();
  }

  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: '600px 0px' }).observe(el.sentinel);

  // ------------------------------------------------------ text queries

  let debounce = 0;

  function textQuery() {
    clearTimeout(debounce);
    const text = el.q.value.trim();
    if (text) {
      setQueryImage(null);
      runQuery({ kind: 'text', text });
    } else if (!query || query.kind === 'text') {
      runQuery(null);
    }
  }

  el.q.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(textQuery, DEBOUNCE_MS);
  });

  el.searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    textQuery();
  });

  // ---------------------------------------------------- image queries

  let queryImageUrl = null;

  function setQueryImage(view) {
    if (queryImageUrl) URL.revokeObjectURL(queryImageUrl);
    queryImageUrl = null;
    if (!view) {
      el.queryImage.hidden = true;
      el.queryImageImg.removeAttribute('src');
      delete el.queryImageImg.dataset.src;
      return;
    }
    if (view.file) {
      queryImageUrl = URL.createObjectURL(view.file);
      el.queryImageImg.src = queryImageUrl;
    } else {
      setImage(el.queryImageImg, `/v1/images/${view.id}/thumbnail?size=${THUMB}`, true);
    }
    el.queryImageImg.alt = view.name;
    el.queryImageLabel.textContent = view.label;
    el.queryImage.dataset.kind = view.file ? 'image' : 'similar';
    el.queryImage.hidden = false;
  }

  function searchByFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith('image/')) {
      showError(new Error(`${file.name || 'That file'} is not an image (${file.type}).`));
      return;
    }
    const name = file.name || 'pasted image';
    clearTimeout(debounce);
    el.q.value = '';
    setQueryImage({ file, name, label: `Images like ${name}` });
    runQuery({ kind: 'image', file });
  }

  function searchSimilar(id) {
    const r = shown.get(id);
    const name = r ? baseName(r.path) : `image ${id}`;
    clearTimeout(debounce);
    el.q.value = '';
    setQueryImage({ id, name, label: `More like ${name}` });
    runQuery({ kind: 'similar', id, name });
  }

  el.queryImageClear.addEventListener('click', () => {
    setQueryImage(null);
    runQuery(null);
    el.q.focus();
  });

  el.fileInput.addEventListener('change', () => {
    const file = el.fileInput.files && el.fileInput.files[0];
    searchByFile(file);
    el.fileInput.value = ''; // the same file again is a new search
  });

  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  let dragDepth = 0;

  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    el.app.classList.add('dragging');
  });
  document.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) el.app.classList.remove('dragging');
  });
  document.addEventListener('drop', (e) => {
    dragDepth = 0;
    el.app.classList.remove('dragging');
    if (!hasFiles(e)) return;
    e.preventDefault();
    const files = Array.from(e.dataTransfer.files || []);
    const file = files.find((f) => !f.type || f.type.startsWith('image/')) || files[0];
    searchByFile(file);
  });

  document.addEventListener('paste', (e) => {
    const items = Array.from((e.clipboardData && e.clipboardData.items) || []);
    const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
    if (!item) return; // text pastes into the search box as usual
    e.preventDefault();
    searchByFile(item.getAsFile());
  });

  // ---------------------------------------------------------- filters

  let filterDebounce = 0;

  function filtersChanged() {
    const n = Object.keys(filterValue()).length;
    el.filterCount.textContent = String(n);
    el.filterCount.hidden = n === 0;
    clearTimeout(filterDebounce);
    filterDebounce = setTimeout(() => { if (query) runQuery(query); }, DEBOUNCE_MS);
  }

  el.filterForm.addEventListener('input', filtersChanged);
  el.filterForm.addEventListener('change', filtersChanged);
  el.filterForm.addEventListener('reset', () => setTimeout(filtersChanged, 0));
  el.filterForm.addEventListener('submit', (e) => e.preventDefault());

  // ------------------------------------------------------ larger view

  let viewing = null;

  function openViewer(id) {
    const r = shown.get(id);
    if (!r) return;
    viewing = id;
    const name = baseName(r.path);
    el.viewerTitle.textContent = name;
    el.viewerImg.alt = name;
    if (r.width && r.height) {
      el.viewerImg.width = r.width;
      el.viewerImg.height = r.height;
    }
    const fileUrl = `/v1/images/${id}/file`;
    el.viewerImg.classList.add('loading');
    setImage(el.viewerImg, fileUrl, true);
    el.viewerOpen.href = fileUrl;
    el.viewerOpen.hidden = !!token;

    const rows = [
      ['Path', pathText(r.path)],
      ['Size', `${r.width ?? '?'} × ${r.height ?? '?'} px, ${fmtBytes(r.bytes)}`],
      ['Format', r.format || '–'],
      ['Modified', fmtTime(r.mtime)],
    ];
    if (typeof r.score === 'number') rows.push(['Score', r.score.toFixed(3)]);
    const others = (r.paths || []).map(pathText).filter((p) => p !== pathText(r.path));
    if (others.length) rows.push(['Also at', others.join('\n')]);
    const dl = document.createDocumentFragment();
    for (const [k, v] of rows) dl.append(h('dt', { text: k }), h('dd', { text: v, dataField: k.toLowerCase() }));
    const tags = Array.isArray(r.tags) ? r.tags : [];
    dl.append(h('dt', { text: 'Tags' }));
    const dd = h('dd', { class: 'tags', dataField: 'tags' });
    if (tags.length === 0) dd.textContent = 'none';
    for (const t of tags) {
      const score = typeof t.score === 'number' ? ` ${t.score.toFixed(2)}` : '';
      dd.append(h('span', { class: 'tag', text: t.label + score }));
    }
    dl.append(dd);
    el.viewerDl.replaceChildren(dl);
    if (!el.viewer.open) el.viewer.showModal();
    el.viewerSimilar.focus();
  }

  el.viewerImg.addEventListener('load', () => el.viewerImg.classList.remove('loading'));
  el.viewerImg.addEventListener('error', () => el.viewerImg.classList.remove('loading'));
  el.viewerClose.addEventListener('click', () => el.viewer.close());
  el.viewer.addEventListener('click', (e) => {
    if (e.target === el.viewer) el.viewer.close(); // a click on the backdrop
  });
  el.viewer.addEventListener('close', () => {
    const src = el.viewerImg.getAttribute('src');
    if (src && src.startsWith('blob:') && blobUrls.delete(src)) URL.revokeObjectURL(src);
    el.viewerImg.removeAttribute('src');
    delete el.viewerImg.dataset.src;
    const item = viewing != null && el.results.querySelector(`[data-id="${viewing}"] button`);
    viewing = null;
    if (item) item.focus();
  });
  el.viewerSimilar.addEventListener('click', () => {
    const id = viewing;
    el.viewer.close();
    if (id != null) searchSimilar(id);
  });

  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && document.activeElement !== el.q && !el.viewer.open
        && !(e.target instanceof HTMLInputElement) && !(e.target instanceof HTMLSelectElement)) {
      e.preventDefault();
      el.q.focus();
    }
  });

  // ----------------------------------------------------------- status

  let events = null;
  let pollTimer = 0;
  let statusRefetch = 0;

  function renderStatus(s) {
    lastStatus = s;
    el.status.images.textContent = fmt(s.images);
    el.status.imagesUnit.textContent = s.images === 1 ? 'image' : 'images';
    el.status.indexing.hidden = !s.indexing;
    el.status.indexed.textContent = fmt(s.indexed);
    el.status.queued.textContent = fmt(s.queued);
    el.status.failed.textContent = fmt(s.failed);
    el.status.failedWrap.hidden = !s.failed;
    el.status.box.dataset.indexing = s.indexing ? 'true' : 'false';
    el.status.box.title = s.last_error
      ? 'Last indexing error: ' + s.last_error
      : `${s.model || ''} on ${s.provider || '?'} · imgdb ${s.version || ''}`;
    el.status.box.classList.toggle('has-error', !!s.last_error);
    renderRoots(s.roots || []);
    updateEmpty();
  }

  const ROOT_LABEL = {
    watching: 'watching',
    polling: 'polling (cannot watch)',
    unavailable: 'unavailable',
  };

  function renderRoots(roots) {
    el.roots.replaceChildren(...roots.map((r) => {
      const path = pathText(r.path);
      return h('li', { class: 'root', dataTestid: 'root', dataState: r.state, title: path },
        h('span', { class: 'root-state', text: ROOT_LABEL[r.state] || r.state }),
        h('span', { class: 'root-path', text: path }));
    }));
  }

  async function fetchStatus() {
    try {
      renderStatus(await apiJson('/v1/status'));
      return true;
    } catch (err) {
      showError(err);
      return false;
    }
  }

  /** Coalesce refetches: a burst of batches is one request. */
  function refetchSoon() {
    if (statusRefetch) return;
    statusRefetch = setTimeout(async () => {
      statusRefetch = 0;
      try { renderStatus(await apiJson('/v1/status')); } catch (_) { /* the feed retries */ }
    }, 500);
  }

  function onProgress(p) {
    const s = lastStatus;
    if (!s) return;
    if (p.type === 'file') {
      if (p.outcome === 'indexed') s.indexed = (s.indexed || 0) + 1;
      else if (p.outcome === 'linked') s.linked = (s.linked || 0) + 1;
      else if (p.outcome === 'removed') s.removed = (s.removed || 0) + 1;
      else if (p.outcome === 'failed') s.failed = (s.failed || 0) + 1;
      s.indexing = true;
      renderStatus(s);
    } else if (p.type === 'batch') {
      s.queued = p.queued;
      renderStatus(s);
      refetchSoon(); // images, files and failures are the daemon's to count
    } else if (p.type === 'root') {
      const roots = (s.roots || []).filter((r) => pathText(r.path) !== p.path);
      roots.push({ path: p.path, state: p.state });
      roots.sort((a, b) => (pathText(a.path) < pathText(b.path) ? -1 : 1));
      s.roots = roots;
      renderStatus(s);
    }
  }

  function startPolling() {
    stopFeed();
    const tick = async () => {
      try { renderStatus(await apiJson('/v1/status')); } catch (err) { showError(err); }
      pollTimer = setTimeout(tick, POLL_MS);
    };
    pollTimer = setTimeout(tick, POLL_MS);
  }

  function startEvents() {
    stopFeed();
    events = new EventSource('/v1/events');
    let dropped = false;
    const handle = (e) => {
      try { onProgress(JSON.parse(e.data)); } catch (_) { /* a malformed event: skip it */ }
    };
    // Unnamed events are "message"; named ones are taken too, should the
    // feed ever name them after their type.
    for (const name of ['message', 'progress', 'file', 'batch', 'root']) events.addEventListener(name, handle);
    events.addEventListener('open', () => {
      el.status.box.classList.remove('offline');
      if (dropped) refetchSoon(); // events were missed while away
      dropped = false;
    });
    events.addEventListener('error', () => {
      dropped = true;
      el.status.box.classList.add('offline');
      // CLOSED: the browser gave up (an HTTP error such as 401): poll.
      if (events && events.readyState === EventSource.CLOSED) startPolling();
    });
  }

  function stopFeed() {
    if (events) { events.close(); events = null; }
    clearTimeout(pollTimer);
    pollTimer = 0;
  }

  function startFeed() {
    if (token) startPolling();
    else startEvents();
  }

  function onTokenChanged() {
    // EventSource cannot carry the header: switch the feed to polling.
    if (events) startPolling();
  }

  // ------------------------------------------------------------ start

  (async () => {
    updateEmpty();
    await fetchStatus();
    startFeed();
    const text = el.q.value.trim();
    if (text) textQuery();
  })();
})();
