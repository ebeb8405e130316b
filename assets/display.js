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

  /* Bring one figure to the current display; only what changed is sent to Plotly. Returns a
   * promise, or null when the figure is not ready yet (not plotted, grey pixels still decoding). */
  function apply(gd) {
    var meta = metaOf(gd), d = state.display;
    if (!meta || !d || !gd._fullLayout || !gd.data) { return null; }
    hook(gd);
    var prev = gd._camlens && gd._camlens.meta === meta ? gd._camlens : {meta: meta};
    var mosaic = meta.kind === 'mosaic';
    var drawSigned = !!(d.signed && meta.gray_signed);
    var factor = d.scale === 'shared' ? meta.factor[d.signed ? 'on' : 'off'] : 1;
    var cmap = drawSigned ? 'rdbu' : d.cmap;
    var view = mosaic ? 'heatmap' : d.view;
    var mode = mosaic ? 'mosaic' : drawSigned ? (view === 'overlay' ? 'signed-overlay' : 'signed-heatmap') : 'unsigned';
    var src = drawSigned ? meta.gray_signed : meta.gray;
    if (!grays.has(src)) { load(src).then(poll); return null; }
    var layout = {}, now = {meta: meta};
    now.image = colour(src, mode, cmap, factor);
    if (now.image !== prev.image) { layout['images[0].source'] = now.image; }
    now.opacity = view === 'heatmap' ? 1 : d.opacity;
    if (now.opacity !== prev.opacity) { layout['images[0].opacity'] = now.opacity; }
    now.caption = drawSigned ? meta.captions.signed : meta.captions[d.cmap];
    if (now.caption !== prev.caption && now.caption) { layout['title.subtitle.text'] = now.caption; }
    var notes = (meta.warnings || []).slice();
    if (d.scale === 'shared' && meta.group && factor < 0.25) {
      notes.unshift("shared scale: this map's peak is " + Math.round(factor * 100) + '% of the largest in its family');
    }
    now.notes = notes.map(function (w) { return '⚠ ' + w; }).join('<br>');
    var shownNotes = gd.layout.annotations && gd.layout.annotations[0] ? gd.layout.annotations[0].text : '';
    if (now.notes !== (prev.notes === undefined ? shownNotes : prev.notes)) {
      layout['annotations[0].text'] = now.notes;
      layout['annotations[0].visible'] = !!now.notes;
    }
    var promises = [];
    var hoverIndex = mosaic ? 0 : 1;
    if (!mosaic) {
      now.visible = view === 'overlay';
      if (now.visible !== prev.visible) { promises.push(Plotly.restyle(gd, {visible: now.visible}, [0])); }
    }
    now.hover = [drawSigned, factor, cmap].join('|');
    if (now.hover !== prev.hover && gd.data[hoverIndex]) {
      var style = {colorscale: [colorscale(cmap)], zmin: drawSigned ? -1 : 0,
                   'colorbar.tickvals': [drawSigned ? [-1, 0, 1] : [0, 0.5, 1]],
                   'colorbar.ticktext': [drawSigned ? [meta.legend.on[0], '0', meta.legend.on[1]]
                                                    : [meta.legend.off[0], '', meta.legend.off[1]]]};
      if (!mosaic) { style.z = [scaled(drawSigned ? meta.hover_signed : meta.hover, factor, drawSigned ? -1 : 0)]; }
      promises.push(Plotly.restyle(gd, style, [hoverIndex]));
    }
    if (Object.keys(layout).length) { promises.push(Plotly.relayout(gd, layout)); }
    gd._camlens = now;
    return Promise.all(promises);
  }

  function applyAll() {
    var start = performance.now(), pending = [], count = 0, waiting = 0;
    graphs().forEach(function (gd) {
      var p = apply(gd);
      if (p) { pending.push(p); count++; } else if (metaOf(gd) || !gd._fullLayout) { waiting++; }
    });
    Promise.all(pending).then(function () {
      requestAnimationFrame(function () {
        state.last = {start: start, end: performance.now(), figures: count, waiting: waiting};
      });
    });
    return waiting;
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

  function valueAt(gd, x, y) {
    var meta = metaOf(gd), trace = gd.data[1];
    if (!trace || !trace.z || !trace.z.length) { return null; }
    var rows = trace.z.length, cols = trace.z[0].length;
    var r = Math.floor(y / (meta.height / rows)), c = Math.floor(x / (meta.width / cols));
    if (r < 0 || c < 0 || r >= rows || c >= cols) { return null; }
    return trace.z[r][c];
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

  window.camlensDisplay = state;
  window.dash_clientside = Object.assign({}, window.dash_clientside);
  window.dash_clientside.camlens = Object.assign({}, window.dash_clientside.camlens, {
    display: function (cmap, opacity, view, scale, signed, linked, _children, luts) {
      if (luts && !Object.keys(state.luts).length) { state.luts = Object.assign({}, luts); }
      state.display = {cmap: cmap || 'jet', opacity: opacity === null || opacity === undefined ? 0.5 : +opacity,
                       view: view || 'overlay', scale: scale || 'map', signed: !!signed};
      state.linked = linked !== false;
      if (!state.linked) { hideCrosses(); }
      applyAll();
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
