/** The URL rule shared by the dashboard and the bell (bell.js). */

// The URL rule of notifications/rules.py (safe_url), repeated because a browser cannot import
// Python; tests/test_rules.py runs both on the same cases. Whitespace and control characters are
// refused, not trimmed: the browser drops a tab inside a URL, so "/\t/evil.example" is "//evil.example".
const REFUSED_IN_URL = /[\x00-\x20\x7f-\x9f\\\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/;
const SAFE_URL_START = /^(?:[Hh][Tt][Tt][Pp][Ss]?:\/\/[^/?#]|\/(?!\/))/;

export function safeLink(url) {
  if (typeof url !== "string" || REFUSED_IN_URL.test(url) || !SAFE_URL_START.test(url)) return "";
  return url;
}
