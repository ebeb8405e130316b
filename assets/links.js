/* "Copy link" (callbacks/urlstate.py): copies the address bar, which the page keeps in step with
   the view, to the clipboard. Where the clipboard is not allowed (plain http on another host, a
   refused permission) the link is shown selected in a field instead, ready for Ctrl+C. */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    camlens_links: {
        copy: function (clicks) {
            const dc = window.dash_clientside;
            if (!clicks) {
                return dc.no_update;
            }
            const url = window.location.href;
            const hidden = 'd-none';
            const shown = 'w-auto flex-grow-1 me-2';
            const say = function (text, keep) {
                dc.set_props('copy-link-status', {children: text});
                clearTimeout(window.camlensCopyTimer);
                if (!keep) {
                    window.camlensCopyTimer = setTimeout(function () {
                        dc.set_props('copy-link-status', {children: ''});
                    }, 2500);
                }
            };
            const fallback = function () {
                dc.set_props('copy-link-text', {value: url, class_name: shown});
                setTimeout(function () {
                    const field = document.getElementById('copy-link-text');
                    let copied = false;
                    if (field) {
                        field.focus();
                        field.select();
                        try {
                            copied = document.execCommand('copy');
                        } catch (e) {
                            copied = false;
                        }
                    }
                    say(copied ? 'Link copied' : 'Press Ctrl+C to copy the link', !copied);
                }, 50);
            };
            dc.set_props('copy-link-text', {value: url, class_name: hidden});
            if (navigator.clipboard && window.isSecureContext) {
                navigator.clipboard.writeText(url).then(function () { say('Link copied'); }, fallback);
            } else {
                fallback();
            }
            return dc.no_update;
        }
    }
});
