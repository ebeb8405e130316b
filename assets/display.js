/* camlens display, in the browser: colour map, opacity, view, colour scale and the Signed switch
 * change every result figure with no request to the server, and the panels are linked (zoom, pan,
 * crosshair with each panel's value).
 *
 * Each figure (layouts/figures.py image_figure) holds the photo as trace 0, the map as
 * layout.images[0] and an invisible hover / colour-bar trace; layout.meta.camlens carries the map
 * as grey pixels (gray: 0..1 -> 0..255; gray_signed: -1..1 -> 0..255) and the facts to draw it
 * (shared-scale factors with Signed off / on, captions per colormap, hover values, warnings).
 * The colour tables come once per page (dcc.Store display-luts, from explain/render.py), so the
 * picture and its colour bar use the very table the server's ZIP and report use.
 */
(function () {
  'use strict';

  var state = {display: null, luts: {}, linked: true, lastRanges: null, pollUntil: 0, polling: false,
               last: null};
  var grays = new Map();     // grey data URI -> {w, h, data} once decoded
  var loading = new Map();   // grey data URI -> Promise
  var coloured = new Map();  // grey URI + how -> coloured data URI
  var canvas = null;

  function table(name) {
    if (!state.luts[name] || typeof state.luts[name] !== 'string') { return state.luts[name]; }
    var hex = state.luts[name], out = new Uint8Array(768);
    for (var i = 0; i < 768; i++) { out[i] = parseInt(hex.substr(2 * i, 2), 16); }
    state.luts[name] = out;
    return out;
  }

  function load(uri) {
    if (!loading.has(uri)) {
      loading.set(uri, new Promise(function (resolve) {
        var img = new Image();
        img.onload = function () {
          var c = document.createElement('canvas');
          c.width = img.naturalWidth; c.height = img.naturalHeight;
          var g = c.getContext('2d', {willReadFrequently: true});
          g.drawImage(img, 0, 0);
          grays.set(uri, {w: c.width, h: c.height, data: g.getImageData(0, 0, c.width, c.height).data});
          resolve();
        };
        img.onerror = function () { resolve(); };
        img.src = uri;
      }));
    }
    return loading.get(uri);
  }

  /* The coloured map as a data URI: JPEG when opaque, PNG when the alpha says how much (a signed
   * overlay: each pixel's opacity is |value|, so zero leaves the photo as it is). */
  function colour(uri, mode, cmap, factor) {
    var key = mode + '|' + cmap + '|' + factor + '|' + uri;
    if (coloured.has(key)) { return coloured.get(key); }
    if (coloured.size > 600) { coloured.clear(); }   // a bound on memory: older results go
    var gray = grays.get(uri), lut = table(cmap);
    if (!gray || !lut) { return null; }
    var index = new Uint8Array(256), alpha = new Uint8Array(256);
    for (var g = 0; g < 256; g++) {
      if (mode === 'signed-overlay' || mode === 'signed-heatmap') {
        var v = Math.max(-1, Math.min(1, (g / 127.5 - 1) * factor));
        index[g] = Math.round((v + 1) * 127.5);
        alpha[g] = mode === 'signed-overlay' ? Math.round(Math.abs(v) * 255) : 255;
      } else {
        index[g] = Math.min(255, Math.round(g * factor));
        alpha[g] = 255;
      }
    }
    if (!canvas) { canvas = document.createElement('canvas'); }
    canvas.width = gray.w; canvas.height = gray.h;
    var ctx = canvas.getContext('2d');
    var out = ctx.createImageData(gray.w, gray.h), o = out.data, d = gray.data;
    for (var i = 0; i < d.length; i += 4) {
      if (mode === 'mosaic' && d[i + 3] === 0) {   // a gap between feature maps: white
        o[i] = o[i + 1] = o[i + 2] = o[i + 3] = 255;
        continue;
      }
      var k = 3 * index[d[i]];
      o[i] = lut[k]; o[i + 1] = lut[k + 1]; o[i + 2] = lut[k + 2]; o[i + 3] = alpha[d[i]];
    }
    ctx.putImageData(out, 0, 0);
    var result = mode === 'signed-overlay' ? canvas.toDataURL('image/png') : canvas.toDataURL('image/jpeg', 0.92);
    coloured.set(key, result);
    return result;
  }

  function colorscale(cmap) {
    var lut = table(cmap), out = [];
    for (var s = 0; s < 16; s++) {
      var i = Math.round(s * 255 / 15);
      out.push([Math.round(i / 255 * 1e4) / 1e4, 'rgb(' + lut[3 * i] + ',' + lut[3 * i + 1] + ',' + lut[3 * i + 2] + ')']);
    }
    return out;
  }

  function scaled(z, factor, lo) {
    return z.map(function (row) {
      return row.map(function (v) { return v === null ? null : Math.max(lo, Math.min(1, Math.round(v * factor * 1000) / 1000)); });
    });
  }

  function metaOf(gd) { return gd && gd.layout && gd.layout.meta && gd.layout.meta.camlens; }

  function graphs() { return Array.prototype.slice.call(document.querySelectorAll('#results-grid .js-plotly-plot')); }

  /* The map layer's picture and opacity, set on the drawn <image> and in the figure (layout and
   * Plotly's full layout), without a Plotly redraw: no recalculation, no relayout event, no Dash
   * prop update, so 12 figures take about a millisecond. A zoom or an export reads the same values
   * from the layout. Falls back to Plotly.relayout when the element is not drawn yet. */
  function setLayer(gd, changes) {
    var el = gd.querySelector('.layer-above .imagelayer image');
    var full = gd._fullLayout.images && gd._fullLayout.images[0];
    if (!el || !full || !full.source) {
      var update = {};
      Object.keys(changes).forEach(function (k) { update['images[0].' + k] = changes[k]; });
      return Plotly.relayout(gd, update);
    }
    Object.keys(changes).forEach(function (k) { gd.layout.images[0][k] = changes[k]; full[k] = changes[k]; });
    if ('source' in changes) { el.setAttribute('href', changes.source); }
    if ('opacity' in changes) { el.setAttribute('opacity', changes.opacity); }
    return null;
  }

  /* What the current display means for one figure. */
  function plan(meta, d) {
    var mosaic = meta.kind === 'mosaic';
    var drawSigned = !!(d.signed && meta.gray_signed);
    var factor = d.scale === 'shared' ? meta.factor[d.signed ? 'on' : 'off'] : 1;
    var view = mosaic ? 'heatmap' : d.view;
    return {drawSigned: drawSigned, factor: factor, view: view, cmap: drawSigned ? 'rdbu' : d.cmap,
            mode: mosaic ? 'mosaic' : drawSigned ? (view === 'overlay' ? 'signed-overlay' : 'signed-heatmap') : 'unsigned',
            src: drawSigned ? meta.gray_signed : meta.gray, hoverIndex: mosaic ? 0 : 1};
  }

  /* The caption, drawn anew in place: every colormap's caption has the same lines (callbacks/
   * render.py subtitle), so its <tspan> lines take the new words without a Plotly redraw. */
  function patchCaption(gd, text) {
    var el = gd.querySelector('.gtitle-subtitle');
    var lines = text.split('<br>'), spans = el ? el.querySelectorAll('tspan.line') : [];
    if (!el || (spans.length ? spans.length !== lines.length : lines.length !== 1)) { return false; }
    var was = (gd.layout.title.subtitle.text || '').split('<br>');
    if (spans.length) {   // lines that differ only (the small print's styled line stays)
      spans.forEach(function (span, i) { if (lines[i] !== was[i]) { span.textContent = lines[i]; } });
    } else { el.textContent = text; }
    gd.layout.title.subtitle.text = text;
    if (gd._fullLayout.title && gd._fullLayout.title.subtitle) { gd._fullLayout.title.subtitle.text = text; }
    return true;
  }

  /* The colour bar's gradient recoloured in place (same 16 stops, display.js and the server build
   * them alike), and the trace's colour scale set to match for any later redraw or export. */
  function patchColorbar(gd, index, scale) {
    var fill = gd.querySelector('.colorbar .cbfill'), full = gd._fullData && gd._fullData[index];
    var match = fill && /url\(["']?#([^"')]+)/.exec(fill.style.fill || fill.getAttribute('fill') || '');
    var gradient = match && gd.querySelector('[id="' + match[1] + '"]');
    var stops = gradient ? gradient.querySelectorAll('stop') : [];
    if (!full || stops.length !== scale.length) { return false; }
    stops.forEach(function (stop) {
      var at = stop.getAttribute('offset'), t = parseFloat(at) / (at.indexOf('%') >= 0 ? 100 : 1);
      var best = scale.reduce(function (a, b) { return Math.abs(b[0] - t) < Math.abs(a[0] - t) ? b : a; });
      stop.setAttribute('stop-color', best[1]);
      stop.style.stopColor = best[1];
    });
    gd.data[index].colorscale = scale;
    full.colorscale = scale;
    return true;
  }

  /* Bring one figure to the current display; only what changed is touched. What the eye sees
   * first (the map's picture and opacity, the caption, the colour bar's colours) is set in place
   * at once; what needs Plotly to recompute (the hover values and colour-bar ticks after a change
   * of scale or Signed, the shared-scale note) is queued, one figure per frame, so the page stays
   * responsive. Returns true, or null when the figure is not ready yet (not plotted, grey pixels
   * still decoding). In the heatmap view the map is opaque over the photo, so the view is an
   * opacity (and, signed, the alpha) and never hides a trace (a restyle would replot). */
  function apply(gd) {
    var meta = metaOf(gd), d = state.display;
    if (!meta || !d || !gd._fullLayout || !gd.data) { return null; }
    hook(gd);
    var prev = gd._camlens && gd._camlens.meta === meta ? gd._camlens : {meta: meta};
    var p = plan(meta, d);
    if (!grays.has(p.src)) { load(p.src).then(function () { apply(gd); }); return null; }
    if (meta.gray_signed && !loading.has(meta.gray_signed)) { load(meta.gray_signed).then(warm); }   // ready for Signed
    var layer = {}, trace = {}, layout = {}, now = {meta: meta};
    now.image = colour(p.src, p.mode, p.cmap, p.factor);
    if (now.image !== prev.image) { layer.source = now.image; }
    now.opacity = p.view === 'heatmap' ? 1 : d.opacity;
    if (now.opacity !== prev.opacity) { layer.opacity = now.opacity; }
    now.caption = p.drawSigned ? meta.captions.signed : meta.captions[d.cmap];
    if (now.caption && now.caption !== (prev.caption === undefined ? gd.layout.title.subtitle.text : prev.caption)
        && !patchCaption(gd, now.caption)) {
      layout['title.subtitle.text'] = now.caption;
    }
    var notes = (meta.warnings || []).slice();
    if (d.scale === 'shared' && meta.group && p.factor < 0.25) {
      notes.unshift("shared scale: this map's peak is " + Math.round(p.factor * 100) + '% of the largest in its family');
    }
    now.notes = notes.map(function (w) { return '⚠ ' + w; }).join('<br>');
    var shownNotes = gd.layout.annotations && gd.layout.annotations[0] ? gd.layout.annotations[0].text : '';
    if (now.notes !== (prev.notes === undefined ? shownNotes : prev.notes)) {
      layout['annotations[0].text'] = now.notes;
      layout['annotations[0].visible'] = !!now.notes;
    }
    var drawn = meta.drawn || {};   // the server drew the colour bar and hover values for its display
    now.values = [p.drawSigned, p.factor].join('|');
    now.cmap = p.cmap;
    var values = prev.values !== undefined ? prev.values : [drawn.signed, drawn.factor].join('|');
    var cmap = prev.cmap !== undefined ? prev.cmap : drawn.cmap;
    if (gd.data[p.hoverIndex] && (now.values !== values || (now.cmap !== cmap
        && !patchColorbar(gd, p.hoverIndex, colorscale(p.cmap))))) {
      trace = {colorscale: [colorscale(p.cmap)], zmin: p.drawSigned ? -1 : 0,
               'colorbar.tickvals': [p.drawSigned ? [-1, 0, 1] : [0, 0.5, 1]],
               'colorbar.ticktext': [p.drawSigned ? [meta.legend.on[0], '0', meta.legend.on[1]]
                                                  : [meta.legend.off[0], '', meta.legend.off[1]]]};
      if (meta.kind !== 'mosaic') {
        trace.z = [scaled(p.drawSigned ? meta.hover_signed : meta.hover, p.factor, p.drawSigned ? -1 : 0)];
      }
    }
    gd._camlens = now;
    var pending = setLayer(gd, layer);
    if (Object.keys(trace).length || Object.keys(layout).length) {
      later(gd, meta, trace, layout, p.hoverIndex);
    }
    return pending || true;
  }

  /* Plotly updates that may wait a few frames: one figure per frame, the latest per figure. */
  var queue = new Map();
  function later(gd, meta, trace, layout, index) {
    var had = queue.get(gd);
    if (had && had.meta === meta) {
      Object.assign(had.trace, trace);
      Object.assign(had.layout, layout);
    } else {
      queue.set(gd, {meta: meta, trace: trace, layout: layout, index: index});
    }
    if (queue.size === 1 && !had) { requestAnimationFrame(drain); }
  }

  function drain() {
    var first = queue.keys().next();
    if (first.done) { state.settled = performance.now(); return; }
    var gd = first.value, job = queue.get(gd);
    queue.delete(gd);
    if (metaOf(gd) === job.meta) {
      var next = function () { requestAnimationFrame(drain); };
      try {
        Plotly.update(gd, job.trace, job.layout, [job.index]).then(next, function (error) { state.error = String(error); next(); });
      } catch (error) {
        state.error = String(error);
        next();
      }
    } else {
      requestAnimationFrame(drain);
    }
  }

  function applyAll() {
    var start = performance.now(), count = 0, waiting = 0;
    state.settled = null;
    graphs().forEach(function (gd) {
      if (apply(gd)) { count++; } else if (metaOf(gd) || !gd._fullLayout) { waiting++; }
    });
    var sync = performance.now() - start;
    if (!queue.size) { state.settled = performance.now(); }
    return new Promise(function (resolve) {
      requestAnimationFrame(function () {   // the next frame shows what was set
        state.last = {start: start, sync: sync, end: performance.now(), figures: count, waiting: waiting};
        resolve(state.last);
      });
    });
  }

  /* While the browser is idle, colour every figure's map with every colormap (and signed, when it
   * can be), so a later change of colormap or of the Signed switch only swaps pictures. */
  function warm() {
    if (state.warming || !state.display) { return; }
    state.warming = true;   // one round at a time; the jobs are gathered when it starts
    setTimeout(function () { state.warming = false; warmRound(); }, 50);
  }

  function warmRound() {
    var jobs = [];
    graphs().forEach(function (gd) {
      var meta = metaOf(gd);
      if (!meta) { return; }
      var p = plan(meta, state.display);
      if (grays.has(meta.gray) && !p.drawSigned) {
        Object.keys(state.luts).forEach(function (c) { if (c !== 'rdbu') { jobs.push([meta.gray, p.mode, c, p.factor]); } });
      }
      if (meta.gray_signed && grays.has(meta.gray_signed)) {
        var signed = plan(meta, Object.assign({}, state.display, {signed: true}));
        jobs.push([meta.gray_signed, signed.mode, 'rdbu', signed.factor]);
      }
    });
    if (!jobs.length || !window.requestIdleCallback) { return; }
    state.warming = true;
    jobs = jobs.filter(function (j) { return !coloured.has(j[1] + '|' + j[2] + '|' + j[3] + '|' + j[0]); });
    requestIdleCallback(function step(deadline) {
      while (jobs.length && deadline.timeRemaining() > 10) {
        var j = jobs.shift();
        colour(j[0], j[1], j[2], j[3]);
      }
      if (jobs.length) { requestIdleCallback(step); } else { state.warming = false; }
    });
  }

  /* Figures arrive (or finish decoding) after the callback that announced them: look again for a
   * few seconds until every figure is drawn with the current display. */
  function poll() {
    state.pollUntil = Math.max(state.pollUntil, performance.now() + 8000);
    if (state.polling) { return; }
    state.polling = true;
    (function step() {
      var stale = graphs().filter(function (gd) {
        var meta = metaOf(gd);
        return !gd._fullLayout || (meta && !(gd._camlens && gd._camlens.meta === meta));
      });
      stale.forEach(apply);
      if (stale.length) { setTimeout(warm, 200); }
      if (performance.now() < state.pollUntil) { setTimeout(step, 60); } else { state.polling = false; }
    })();
  }

  /* ---- linked panels ---------------------------------------------------------------------- */

  function linkable(gd) { var m = metaOf(gd); return m && m.kind === 'overlay' && gd._fullLayout; }

  function same(a, b) {
    return a && b && Math.abs(a[0] - b[0]) < 1e-6 && Math.abs(a[1] - b[1]) < 1e-6;
  }

  function onRelayout(gd, event) {
    if (!state.linked || !linkable(gd) || !event) { return; }
    if (!Object.keys(event).some(function (k) { return k.indexOf('xaxis') === 0 || k.indexOf('yaxis') === 0; })) { return; }
    var x = gd._fullLayout.xaxis.range.slice(), y = gd._fullLayout.yaxis.range.slice();
    // An echo of our own broadcast (or a panel already there) sends nothing: no loop.
    if (state.lastRanges && same(state.lastRanges.x, x) && same(state.lastRanges.y, y)) { return; }
    state.lastRanges = {x: x, y: y};
    graphs().forEach(function (other) {
      if (other === gd || !linkable(other)) { return; }
      var fl = other._fullLayout;
      if (same(fl.xaxis.range, x) && same(fl.yaxis.range, y)) { return; }
      Plotly.relayout(other, {'xaxis.range': x.slice(), 'yaxis.range': y.slice()});
    });
  }

  function cross(gd) {
    var el = gd.querySelector(':scope > .camlens-cross');
    if (!el) {
      el = document.createElement('div');
      el.className = 'camlens-cross';
      el.innerHTML = '<div class="camlens-cross-x"></div><div class="camlens-cross-y"></div>' +
                     '<div class="camlens-cross-value"></div>';
      gd.appendChild(el);
    }
    return el;
  }

  /* The value drawn at (x, y): the figure's coarse hover values with the current display's
   * factor (what its own hover label says, once Plotly has caught up). */
  function valueAt(gd, x, y) {
    var meta = metaOf(gd), p = plan(meta, state.display);
    var z = p.drawSigned ? meta.hover_signed : meta.hover;
    if (!z || !z.length) { return null; }
    var rows = z.length, cols = z[0].length;
    var r = Math.floor(y / (meta.height / rows)), c = Math.floor(x / (meta.width / cols));
    if (r < 0 || c < 0 || r >= rows || c >= cols || z[r][c] === null) { return null; }
    return Math.max(p.drawSigned ? -1 : 0, Math.min(1, z[r][c] * p.factor));
  }

  function showCross(gd, x, y, source) {
    var fl = gd._fullLayout, xa = fl.xaxis, ya = fl.yaxis, el = cross(gd);
    var px = xa._offset + xa.l2p(x), py = ya._offset + ya.l2p(y);
    if (px < xa._offset || px > xa._offset + xa._length || py < ya._offset || py > ya._offset + ya._length) {
      el.style.display = 'none';
      return;
    }
    el.style.display = 'block';
    var vx = el.children[0], hy = el.children[1], label = el.children[2];
    vx.style.cssText = 'left:' + px + 'px;top:' + ya._offset + 'px;height:' + ya._length + 'px';
    hy.style.cssText = 'top:' + py + 'px;left:' + xa._offset + 'px;width:' + xa._length + 'px';
    var value = valueAt(gd, x, y);
    label.textContent = value === null || value === undefined ? '' : value.toFixed(2);
    label.style.cssText = 'left:' + (px + 6) + 'px;top:' + Math.max(ya._offset, py - 22) + 'px;display:' +
      (source || value === null || value === undefined ? 'none' : 'block');
  }

  function hideCrosses() {
    document.querySelectorAll('.camlens-cross').forEach(function (el) { el.style.display = 'none'; });
  }

  function onHover(gd, event) {
    // Only a real pointer: a programmatic hover (Plotly.Fx.hover) carries no MouseEvent.
    if (!state.linked || !linkable(gd) || !event || !(event.event instanceof MouseEvent)) { return; }
    var x = event.xvals && event.xvals[0], y = event.yvals && event.yvals[0];
    if (x === undefined || y === undefined) { return; }
    graphs().forEach(function (other) { if (linkable(other)) { showCross(other, x, y, other === gd); } });
  }

  function hook(gd) {
    if (gd._camlensHooked || !gd.on) { return; }
    gd._camlensHooked = true;
    gd.on('plotly_relayout', function (event) { onRelayout(gd, event); });
    gd.on('plotly_hover', function (event) { onHover(gd, event); });
    gd.on('plotly_unhover', hideCrosses);
    gd.on('plotly_afterplot', function () {   // Dash drew a new figure into this graph: redraw it
      var meta = metaOf(gd);
      if (meta && !(gd._camlens && gd._camlens.meta === meta)) { poll(); }
    });
  }

  state.apply = applyAll;
  window.camlensDisplay = state;
  window.dash_clientside = Object.assign({}, window.dash_clientside);
  window.dash_clientside.camlens = Object.assign({}, window.dash_clientside.camlens, {
    display: function (cmap, opacity, view, scale, signed, linked, _children, luts) {
      if (luts && !Object.keys(state.luts).length) { state.luts = Object.assign({}, luts); }
      state.display = {cmap: cmap || 'jet', opacity: opacity === null || opacity === undefined ? 0.5 : +opacity,
                       view: view || 'overlay', scale: scale || 'map', signed: !!signed};
      state.linked = linked !== false;
      if (!state.linked) { hideCrosses(); }
      state.done = applyAll().then(function (last) { setTimeout(warm, 100); return last; });
      poll();
      return window.dash_clientside.no_update;
    },
    links: function (link, cmap, opacity, view, scale, signed) {
      var hidden = 'btn btn-sm btn-outline-secondary d-none';
      if (!link || !link.href) { return ['', hidden]; }
      var query = new URLSearchParams({cmap: cmap || 'jet', opacity: opacity === null || opacity === undefined ? 0.5 : opacity,
                                       view: view || 'overlay', scale: scale || 'map', signed: signed ? '1' : '0'});
      return [link.href + '?' + query.toString(), 'btn btn-sm btn-outline-secondary'];
    }
  });
}());
