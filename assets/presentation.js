/* Presentation mode of the explorer page: the "Present" button (#present-open) goes full screen
   (where the browser allows it; the mode works without), hides the controls and shows one result
   figure at a time, large. Keys: left/right the previous/next figure, up/down or PageUp/PageDown
   the previous/next gallery photo, Esc leaves. On-screen arrows do the same for a mouse or a
   touch screen. Plain event listeners on the document: Dash redraws the page's parts freely. */
(function () {
  'use strict';
  var index = 0;          // the figure shown, among the results grid's columns
  var bar = null;         // the on-screen controls, outside React's tree

  function presenting() { return document.body.classList.contains('presenting'); }

  function figures() {
    return Array.prototype.slice.call(document.querySelectorAll('#results-grid .result-col'));
  }

  function button(name, label, icon) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-light present-' + name;
    b.id = 'present-' + name;
    b.title = label;
    b.setAttribute('aria-label', label);
    var i = document.createElement('i');
    i.className = 'bi bi-' + icon;
    b.appendChild(i);
    return b;
  }

  function controls() {
    if (bar) { return bar; }
    bar = document.createElement('div');
    bar.className = 'present-bar';
    bar.setAttribute('role', 'toolbar');
    var caption = document.createElement('div');
    caption.id = 'present-caption';
    caption.className = 'present-caption';
    bar.appendChild(button('photo-prev', 'Previous photo (up arrow)', 'chevron-double-up'));
    bar.appendChild(button('prev', 'Previous figure (left arrow)', 'chevron-left'));
    bar.appendChild(caption);
    bar.appendChild(button('next', 'Next figure (right arrow)', 'chevron-right'));
    bar.appendChild(button('photo-next', 'Next photo (down arrow)', 'chevron-double-down'));
    bar.appendChild(button('close', 'Leave presentation (Esc)', 'x-lg'));
    document.body.appendChild(bar);
    return bar;
  }

  function caption() {
    var cols = figures();
    var line = document.getElementById('present-caption');
    if (!line) { return; }
    if (!cols.length) {
      line.textContent = 'No figure yet: pick a photo (up/down arrows).';
      return;
    }
    var col = cols[Math.min(index, cols.length - 1)];
    var title = col.querySelector('.gtitle');
    var sub = col.querySelector('.gtitle-subtitle');
    var text = (title ? title.textContent : (col.innerText || '').split('\n')[0]) +
      (sub ? ' · ' + sub.textContent : '') + '  (' + (index + 1) + ' of ' + cols.length + ')';
    if (line.textContent !== text) { line.textContent = text; }
  }

  function show(i) {
    var cols = figures();
    if (cols.length) {
      index = ((i % cols.length) + cols.length) % cols.length;
      cols.forEach(function (col, k) { col.classList.toggle('present-current', k === index); });
    }
    caption();
    window.dispatchEvent(new Event('resize'));   // Plotly refits the figure to its new size
  }

  function samples() {
    return Array.prototype.slice.call(document.querySelectorAll('#samples .sample-thumb'));
  }

  function currentSample(list) {
    var caption = document.querySelector('#original figcaption');
    var name = caption ? caption.textContent.split(' · ')[0] : '';
    for (var k = 0; k < list.length; k++) {
      try {
        if (JSON.parse(list[k].id).name === name) { return k; }
      } catch (e) { /* not a pattern id */ }
    }
    return -1;
  }

  function photo(step) {
    var list = samples();
    if (!list.length) { return; }
    var k = currentSample(list);
    k = k < 0 ? (step > 0 ? 0 : list.length - 1) : ((k + step) % list.length + list.length) % list.length;
    index = 0;
    list[k].click();
  }

  function enter() {
    if (presenting()) { return; }
    document.body.classList.add('presenting');
    controls().hidden = false;
    show(0);
    var root = document.documentElement;
    if (root.requestFullscreen && !document.fullscreenElement) {
      try {
        var asked = root.requestFullscreen();
        if (asked && asked.catch) { asked.catch(function () { /* refused: the mode works without */ }); }
      } catch (e) { /* not allowed here */ }
    }
  }

  function leave() {
    if (!presenting()) { return; }
    document.body.classList.remove('presenting');
    figures().forEach(function (col) { col.classList.remove('present-current'); });
    if (bar) { bar.hidden = true; }
    if (document.fullscreenElement && document.exitFullscreen) {
      var done = document.exitFullscreen();
      if (done && done.catch) { done.catch(function () {}); }
    }
    window.dispatchEvent(new Event('resize'));
  }

  document.addEventListener('click', function (event) {
    var target = event.target.closest ? event.target.closest('button') : null;
    if (!target) { return; }
    switch (target.id) {
      case 'present-open': enter(); break;
      case 'present-close': leave(); break;
      case 'present-prev': show(index - 1); break;
      case 'present-next': show(index + 1); break;
      case 'present-photo-prev': photo(-1); break;
      case 'present-photo-next': photo(1); break;
      default: return;
    }
  });

  document.addEventListener('keydown', function (event) {
    if (!presenting() || event.altKey || event.ctrlKey || event.metaKey) { return; }
    var handled = true;
    switch (event.key) {
      case 'ArrowRight': show(index + 1); break;
      case 'ArrowLeft': show(index - 1); break;
      case 'ArrowDown': case 'PageDown': photo(1); break;
      case 'ArrowUp': case 'PageUp': photo(-1); break;
      case 'Escape': leave(); break;
      default: handled = false;
    }
    if (handled) { event.preventDefault(); }
  });

  // Esc in full screen is the browser's own: it leaves full screen without a keydown. Leave too.
  document.addEventListener('fullscreenchange', function () {
    if (!document.fullscreenElement) { leave(); }
  });
  document.addEventListener('camlens:leave-presentation', leave);

  // New figures (another photo, a slow method done): keep showing one. Only a figure that went
  // missing refits the page; otherwise just the caption follows (a refit redraws the DOM again).
  var pending = null;
  new MutationObserver(function () {
    if (!presenting() || pending) { return; }
    pending = setTimeout(function () {
      pending = null;
      var cols = figures();
      if (cols.length && !cols.some(function (c) { return c.classList.contains('present-current'); })) {
        show(Math.min(index, cols.length - 1));
      } else {
        caption();
      }
    }, 150);
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
