/**
 * Which URLs may become links: the rule of notifications/rules.py (safe_url, link), for the
 * browser, which cannot import Python. The dashboard and the service worker (sw.js) import it;
 * tests/safe_url_cases.json is the one table of cases both languages are tested on (tests/test_rules.py).
 *
 * An http(s) URL with a host, or a path starting with a single "/". Whitespace and control
 * characters are refused, not trimmed: the browser drops a tab inside a URL, so "/\t/evil.example"
 * would be "//evil.example", another site; a backslash is read as "/".
 */
const REFUSED_IN_URL = /[\x00-\x20\x7f-\x9f\\\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/;
// Spelled out rather than /i, the same as in Python, where IGNORECASE also takes U+017F (long s) for "s".
const SAFE_URL_START = /^(?:[Hh][Tt][Tt][Pp][Ss]?:\/\/[^/?#]|\/(?!\/))/;

/** `url` if it may be a link target, else "" (no link). */
export function safeLink(url) {
  if (typeof url !== "string" || REFUSED_IN_URL.test(url) || !SAFE_URL_START.test(url)) return "";
  return url;
}
