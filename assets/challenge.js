/* Beat the AI: one Dash app, two pages. The address decides which container shows
   (callbacks/challenge.py wires this as a clientside callback; the CSP forbids inline scripts). */
(function () {
  function toggle(className, hidden) {
    var parts = String(className || '').split(/\s+/).filter(function (c) { return c && c !== 'd-none'; });
    if (hidden) { parts.push('d-none'); }
    return parts.join(' ');
  }
  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.challenge = Object.assign({}, window.dash_clientside.challenge, {
    showPage: function (pathname, explorerClass, challengeClass) {
      var challenge = /\/challenge\/?$/.test(pathname || '');
      if (challenge && document.body.classList.contains('presenting')) {
        document.dispatchEvent(new Event('camlens:leave-presentation'));
      }
      return [toggle(explorerClass, challenge), toggle(challengeClass, !challenge)];
    }
  });
})();
