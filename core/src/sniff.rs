//! Finding the route key of a raw JSON message without parsing it.
//!
//! A ROUTER server dispatches each incoming body by the string value of one top-level field
//! (normally `"type"`). Parsing the whole body just to route it would cost an allocation and a
//! full pass per message, so [`Sniffer::sniff`] looks only at the first `sniff_bytes` bytes and
//! returns the raw bytes of that value, or `None`, which means "route to the catch-all".
//!
//! # Rules
//!
//! Let the *window* be the first `sniff_bytes` bytes of the body (the whole body if shorter).
//! Nothing after the window is ever read. "Whitespace" is JSON whitespace only: space, tab,
//! line feed and carriage return.
//!
//! 1. The window must start, after optional whitespace, with `{`. Otherwise: `None`.
//! 2. The window is scanned left to right as JSON tokens. Strings run from a `"` to the next
//!    `"` that is not escaped; a `\` escapes the byte after it, so `\"` does not end a string
//!    and `\\"` does. `{` and `[` outside strings open a level, `}` and `]` close one; the
//!    opening `{` is depth 1. If the top-level object closes inside the window: `None`.
//! 3. A *top-level key* is a string at depth 1 whose previous non-whitespace byte is `{` or `,`
//!    and whose next non-whitespace byte is `:`. Strings inside values (`"msg":"a \"type\""`),
//!    keys of nested objects (`"data":{"type":"x"}`) and strings in arrays are never keys.
//! 4. A top-level key matches when its raw bytes between the quotes are exactly the field
//!    name: `"type_x"`, `"xtype"` and `"Type"` do not match `type`.
//! 5. The first matching key decides; later duplicates are not looked at. After it come
//!    optional whitespace, `:`, optional whitespace, then the value. If the value is a string
//!    without any `\` and its closing `"` lies inside the window, the result is the bytes
//!    between its quotes (possibly empty). Anything else — a number, object, array, `true`,
//!    `false`, `null`, a string containing an escape, a string cut by the window — gives `None`.
//! 6. A top-level key that contains a `\` escape and comes before the first matching key gives
//!    `None`: it might decode to the field name (`"t\u0079pe"`), and telling that would mean
//!    decoding it, so the route is left to code that parses the message.
//! 7. If the window ends (or an unterminated string reaches its end) before a matching key is
//!    found: `None`.
//!
//! The body is not validated. On a well-formed JSON object these rules give the value of the
//! first top-level occurrence of the field; on malformed input the result is still one of
//! `None` or a sub-slice of the body, and the scan never panics. The returned bytes are not
//! checked to be UTF-8. A field name that would need escaping in JSON (one containing `"`,
//! `\` or a control character) can never match.
//!
//! Note that `JSON.parse` keeps the *last* of duplicate keys, whereas rule 5 takes the first.
//!
//! # Cost
//!
//! Each byte of the window is read a bounded number of times (the memchr searches only move
//! forward; the backward steps cover only the whitespace in front of each depth-1 string), so
//! the time is O(min(body length, `sniff_bytes`)). No allocation.

use memchr::{memchr2, memchr3};

/// Compiled once per server: the field name (e.g. "type") and how many bytes to look at.
#[derive(Debug, Clone)]
pub struct Sniffer {
    field: Box<[u8]>,
    sniff_bytes: usize,
}

impl Sniffer {
    pub fn new(field: &str, sniff_bytes: usize) -> Sniffer {
        Sniffer {
            field: field.as_bytes().into(),
            sniff_bytes,
        }
    }

    /// The raw bytes of the top-level string value of the field, if found within the first
    /// `sniff_bytes` bytes of `body` and unambiguous; None means "fall back to the catch-all".
    /// The exact rules are in the module documentation.
    pub fn sniff<'a>(&self, body: &'a [u8]) -> Option<&'a [u8]> {
        let w = &body[..body.len().min(self.sniff_bytes)];
        let open = skip_ws(w, 0);
        if w.get(open) != Some(&b'{') {
            return None;
        }
        let mut depth = 1usize;
        let mut structural = Structural::new(w);
        let mut pos = open + 1;
        while let Some(at) = structural.next(pos) {
            match w[at] {
                b'"' => {
                    let (end, escaped) = string_end(w, at)?;
                    pos = end + 1;
                    if depth != 1 {
                        continue;
                    }
                    let Some(colon) = key_colon(w, at, end) else {
                        continue;
                    };
                    if escaped {
                        return None;
                    }
                    if w[at + 1..end] == *self.field {
                        return string_value(w, colon + 1);
                    }
                    pos = colon + 1;
                }
                b'{' | b'[' => {
                    depth += 1;
                    pos = at + 1;
                }
                _ => {
                    depth -= 1;
                    if depth == 0 {
                        return None;
                    }
                    pos = at + 1;
                }
            }
        }
        None
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Index of the first non-whitespace byte at or after `from`, or `w.len()`.
fn skip_ws(w: &[u8], from: usize) -> usize {
    w[from..]
        .iter()
        .position(|&b| !is_ws(b))
        .map_or(w.len(), |i| from + i)
}

/// Finds the next `"`, `{`, `}`, `[` or `]` at or after a position that only moves forward.
///
/// memchr3 can look for three bytes at once but we need five, so two searches run side by
/// side. Each remembers its last hit and is re-run only once the scan has moved past it, which
/// keeps the total work linear: rerunning both from every position would be quadratic on
/// bodies where one kind of byte is rare.
struct Structural<'a> {
    w: &'a [u8],
    /// Next `"`, `{` or `}` at or after the last search start; `w.len()` when there is none.
    quote_brace: usize,
    /// Next `[` or `]`, likewise.
    bracket: usize,
}

impl<'a> Structural<'a> {
    fn new(w: &'a [u8]) -> Self {
        Structural {
            w,
            quote_brace: find_from(w, 0, |s| memchr3(b'"', b'{', b'}', s)),
            bracket: find_from(w, 0, |s| memchr2(b'[', b']', s)),
        }
    }

    /// `from` must be at most `w.len()` and never smaller than in the previous call.
    fn next(&mut self, from: usize) -> Option<usize> {
        // A cached hit at or after `from` is still the first one there, since the earlier
        // search started at or before `from` and found nothing in between.
        if self.quote_brace < from {
            self.quote_brace = find_from(self.w, from, |s| memchr3(b'"', b'{', b'}', s));
        }
        if self.bracket < from {
            self.bracket = find_from(self.w, from, |s| memchr2(b'[', b']', s));
        }
        let at = self.quote_brace.min(self.bracket);
        (at < self.w.len()).then_some(at)
    }
}

fn find_from(w: &[u8], from: usize, search: impl Fn(&[u8]) -> Option<usize>) -> usize {
    search(&w[from..]).map_or(w.len(), |i| from + i)
}

/// Given the opening quote at `open`, the index of the closing quote and whether the string
/// held any escape; `None` if the window ends first.
fn string_end(w: &[u8], open: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    let mut i = open + 1;
    loop {
        let at = i + memchr2(b'"', b'\\', &w[i..])?;
        if w[at] == b'"' {
            return Some((at, escaped));
        }
        escaped = true;
        // The escaped byte is skipped whatever it is; that is all `\"` and `\\` need, and
        // `\uXXXX` holds no quote or backslash.
        i = at + 2;
        if i > w.len() {
            return None;
        }
    }
}

/// If the string `w[open..=close]` is an object key — preceded by `{` or `,` and followed by
/// `:`, whitespace aside — the index of that colon.
fn key_colon(w: &[u8], open: usize, close: usize) -> Option<usize> {
    // Only whitespace is stepped over, and each depth-1 string owns the gap in front of it,
    // so these backward steps add up to at most the window length.
    let before = w[..open].iter().rposition(|&b| !is_ws(b))?;
    if !matches!(w[before], b'{' | b',') {
        return None;
    }
    let colon = skip_ws(w, close + 1);
    (w.get(colon) == Some(&b':')).then_some(colon)
}

/// The contents of an escape-free string value starting, after whitespace, at `from`.
fn string_value(w: &[u8], from: usize) -> Option<&[u8]> {
    let open = skip_ws(w, from);
    if w.get(open) != Some(&b'"') {
        return None;
    }
    let start = open + 1;
    let len = memchr2(b'"', b'\\', &w[start..])?;
    (w[start + len] == b'"').then(|| &w[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(body: &str) -> Option<&str> {
        Sniffer::new("type", 4096)
            .sniff(body.as_bytes())
            .map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn sniff_plain_values() {
        assert_eq!(sniff(r#"{"type":"time_request"}"#), Some("time_request"));
        assert_eq!(sniff(r#"{"a":1,"type":"x","b":2}"#), Some("x"));
        assert_eq!(sniff(r#"{"type":""}"#), Some(""));
        assert_eq!(sniff(r#"{"type":"héllo"}"#), Some("héllo"));
    }

    #[test]
    fn sniff_word_inside_values_does_not_count() {
        assert_eq!(
            sniff(r#"{"msg":"user asked for time_request","type":"log"}"#),
            Some("log")
        );
        assert_eq!(sniff(r#"{"msg":"\"type\":\"time_request\""}"#), None);
        assert_eq!(
            sniff(r#"{"msg":"\"type\":\"time_request\"","type":"real"}"#),
            Some("real")
        );
        assert_eq!(sniff(r#"{"msg":"type","x":"y"}"#), None);
        // A value that is the word itself, followed by a colon in malformed input, is still a
        // value: it is preceded by `:`.
        assert_eq!(sniff(r#"{"msg":"type":"x"}"#), None);
    }

    #[test]
    fn sniff_nested_keys_do_not_count() {
        assert_eq!(
            sniff(r#"{"data":{"type":"inner"},"type":"outer"}"#),
            Some("outer")
        );
        assert_eq!(sniff(r#"{"data":{"type":"inner"}}"#), None);
        assert_eq!(
            sniff(r#"{"a":[{"type":"in"},["type",{"type":"x"}]],"type":"out"}"#),
            Some("out")
        );
        assert_eq!(sniff(r#"{"a":{"b":{"c":{"type":"deep"}}},"z":1}"#), None);
        assert_eq!(sniff(r#"{"a":["type","x"],"b":1}"#), None);
        // Braces and brackets inside strings do not change the depth.
        assert_eq!(
            sniff(r#"{"a":"{[{[","b":{"c":"}]}"},"type":"t"}"#),
            Some("t")
        );
        assert_eq!(sniff(r#"{"a":"}","type":"t"}"#), Some("t"));
    }

    #[test]
    fn sniff_key_must_be_exact() {
        assert_eq!(sniff(r#"{"type_x":"a"}"#), None);
        assert_eq!(sniff(r#"{"xtype":"a"}"#), None);
        assert_eq!(sniff(r#"{"Type":"a"}"#), None);
        assert_eq!(sniff(r#"{"typ":"a"}"#), None);
        assert_eq!(sniff(r#"{"type_x":"a","xtype":"b","type":"c"}"#), Some("c"));
    }

    #[test]
    fn sniff_value_must_be_plain_string() {
        assert_eq!(sniff(r#"{"type":123}"#), None);
        assert_eq!(sniff(r#"{"type":true}"#), None);
        assert_eq!(sniff(r#"{"type":null}"#), None);
        assert_eq!(sniff(r#"{"type":{"type":"a"}}"#), None);
        assert_eq!(sniff(r#"{"type":["a"]}"#), None);
        // The first occurrence decides even when it is unusable.
        assert_eq!(sniff(r#"{"type":1,"type":"a"}"#), None);
    }

    #[test]
    fn sniff_escaped_values_fall_back() {
        assert_eq!(sniff(r#"{"type":"a\"b"}"#), None);
        assert_eq!(sniff(r#"{"type":"a\\b"}"#), None);
        assert_eq!(sniff(r#"{"type":"\u0061"}"#), None);
        assert_eq!(sniff(r#"{"type":"a\nb"}"#), None);
    }

    #[test]
    fn sniff_escapes_in_other_strings() {
        // `\\"` ends the string; the following "type" is a real key.
        assert_eq!(sniff(r#"{"a":"x\\","type":"t"}"#), Some("t"));
        // `\\\"` does not end it.
        assert_eq!(sniff(r#"{"a":"x\\\",\"type\":\"t","b":1}"#), None);
        assert_eq!(sniff(r#"{"a":"\\\\","type":"t"}"#), Some("t"));
        assert_eq!(sniff(r#"{"a":"\u0022","type":"t"}"#), Some("t"));
        // Escaped keys that could decode to the field name are ambiguous.
        assert_eq!(sniff(r#"{"t\u0079pe":"a","type":"b"}"#), None);
        assert_eq!(sniff(r#"{"a\"b":1,"type":"b"}"#), None);
        // After the match they are not looked at.
        assert_eq!(sniff(r#"{"type":"b","t\u0079pe":"a"}"#), Some("b"));
        // Escaped strings in nested keys and values are fine.
        assert_eq!(sniff(r#"{"d":{"t\u0079pe":"a"},"type":"b"}"#), Some("b"));
    }

    #[test]
    fn sniff_first_duplicate_wins() {
        assert_eq!(sniff(r#"{"type":"first","type":"second"}"#), Some("first"));
    }

    #[test]
    fn sniff_whitespace_variants() {
        assert_eq!(sniff(r#"{"type" : "a"}"#), Some("a"));
        assert_eq!(sniff("{\t\"type\"\t:\t\"a\"\t}"), Some("a"));
        assert_eq!(sniff("{\n  \"type\"\n:\n\"a\"\n}\n"), Some("a"));
        assert_eq!(sniff("{\r\n\"type\"\r\n:\r\n\"a\"\r\n}"), Some("a"));
        assert_eq!(sniff(" \t\r\n{\"type\":\"a\"}"), Some("a"));
        assert_eq!(sniff("{\"x\" : 1 ,\n\t\"type\" :\r\n \"a\" }"), Some("a"));
        // Value-like strings stay values whatever the spacing.
        assert_eq!(sniff("{\"a\" :\n \"type\" , \"b\":1}"), None);
        // Non-JSON whitespace is not skipped.
        assert_eq!(sniff("\u{b}{\"type\":\"a\"}"), None);
        assert_eq!(sniff("\u{feff}{\"type\":\"a\"}"), None);
        assert_eq!(sniff("{\u{b}\"type\":\"a\"}"), None);
    }

    #[test]
    fn sniff_requires_top_level_object() {
        assert_eq!(sniff(r#"[{"type":"a"}]"#), None);
        assert_eq!(sniff(r#""type""#), None);
        assert_eq!(sniff(r#"x{"type":"a"}"#), None);
        assert_eq!(sniff(""), None);
        assert_eq!(sniff("   "), None);
        assert_eq!(sniff("{"), None);
        assert_eq!(sniff("{}"), None);
        // Nothing after the top-level object counts.
        assert_eq!(sniff(r#"{"a":1}{"type":"a"}"#), None);
        assert_eq!(sniff(r#"{"a":1},"type":"a"}"#), None);
    }

    #[test]
    fn sniff_window_boundaries() {
        let body = br#"{"type":"abc","x":1}"#;
        // Closing quote of the value is at index 12.
        let close = 12;
        assert_eq!(body[close], b'"');
        assert_eq!(
            Sniffer::new("type", close + 1).sniff(body),
            Some(&b"abc"[..])
        );
        assert_eq!(Sniffer::new("type", close).sniff(body), None);
        assert_eq!(
            Sniffer::new("type", body.len()).sniff(body),
            Some(&b"abc"[..])
        );
        assert_eq!(
            Sniffer::new("type", usize::MAX).sniff(body),
            Some(&b"abc"[..])
        );
        assert_eq!(Sniffer::new("type", 0).sniff(body), None);
        assert_eq!(Sniffer::new("type", 1).sniff(body), None);

        // A body exactly as long as the window.
        let exact = br#"{"type":"a"}"#;
        assert_eq!(
            Sniffer::new("type", exact.len()).sniff(exact),
            Some(&b"a"[..])
        );
        assert_eq!(
            Sniffer::new("type", exact.len() - 1).sniff(exact),
            Some(&b"a"[..])
        );
        assert_eq!(Sniffer::new("type", exact.len() - 2).sniff(exact), None);

        // The key far from the start: one byte short is a fallback.
        let padded = format!(r#"{{"pad":"{}","type":"late"}}"#, "p".repeat(1000));
        let close = padded.len() - 2;
        assert_eq!(padded.as_bytes()[close], b'"');
        let s = |n| Sniffer::new("type", n).sniff(padded.as_bytes());
        assert_eq!(s(close + 1), Some(&b"late"[..]));
        assert_eq!(s(close), None);
        assert_eq!(s(close - 4), None);
        assert_eq!(s(close - 10), None);

        // A window that cuts a key or an escape in an earlier string.
        let esc = br#"{"a":"\\","type":"t"}"#;
        for n in 0..esc.len() {
            let want = (n >= esc.len() - 1).then_some(&b"t"[..]);
            assert_eq!(Sniffer::new("type", n).sniff(esc), want, "window {n}");
        }
    }

    #[test]
    fn sniff_other_field_names() {
        let s = Sniffer::new("op", 64);
        assert_eq!(s.sniff(br#"{"type":"a","op":"b"}"#), Some(&b"b"[..]));
        assert_eq!(s.sniff(br#"{"ops":"a"}"#), None);
        let empty = Sniffer::new("", 64);
        assert_eq!(empty.sniff(br#"{"a":"x","":"y"}"#), Some(&b"y"[..]));
        // A name that needs escaping in JSON can never match.
        let quoted = Sniffer::new("a\"b", 64);
        assert_eq!(quoted.sniff(br#"{"a\"b":"x"}"#), None);
    }

    #[test]
    fn sniff_invalid_utf8_is_returned_raw() {
        let body = b"{\"\xff\":1,\"type\":\"\xfe\xff\"}";
        assert_eq!(Sniffer::new("type", 64).sniff(body), Some(&b"\xfe\xff"[..]));
    }

    #[test]
    fn sniff_long_runs_of_one_structural_kind() {
        // Exercises the cached searches: many brackets and no quotes, then the reverse.
        let mut body = String::from(r#"{"a":"#);
        body.push_str(&"[".repeat(10_000));
        body.push_str(&"]".repeat(10_000));
        body.push_str(r#","type":"t"}"#);
        let s = Sniffer::new("type", usize::MAX);
        assert_eq!(s.sniff(body.as_bytes()), Some(&b"t"[..]));

        let mut body = String::from("{");
        for i in 0..5_000 {
            body.push_str(&format!(r#""k{i}":"v","#));
        }
        body.push_str(r#""a":[1],"type":"t"}"#);
        assert_eq!(s.sniff(body.as_bytes()), Some(&b"t"[..]));
    }

    // ---- randomized checks ----

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    /// Byte-at-a-time restatement of the module rules, to check the memchr-driven scan
    /// against on arbitrary input.
    fn reference(field: &[u8], limit: usize, body: &[u8]) -> Option<Vec<u8>> {
        let w = &body[..body.len().min(limit)];
        let ws = |b: u8| b == b' ' || b == b'\t' || b == b'\n' || b == b'\r';
        let mut i = 0;
        while i < w.len() && ws(w[i]) {
            i += 1;
        }
        if i >= w.len() || w[i] != b'{' {
            return None;
        }
        i += 1;
        let mut depth = 1;
        while i < w.len() {
            match w[i] {
                b'"' => {
                    let mut j = i + 1;
                    let mut escaped = false;
                    loop {
                        if j >= w.len() {
                            return None;
                        }
                        if w[j] == b'\\' {
                            escaped = true;
                            j += 2;
                        } else if w[j] == b'"' {
                            break;
                        } else {
                            j += 1;
                        }
                    }
                    if depth == 1 {
                        let mut p = i;
                        while p > 0 && ws(w[p - 1]) {
                            p -= 1;
                        }
                        let prev = w[p - 1];
                        let mut n = j + 1;
                        while n < w.len() && ws(w[n]) {
                            n += 1;
                        }
                        if (prev == b'{' || prev == b',') && n < w.len() && w[n] == b':' {
                            if escaped {
                                return None;
                            }
                            if &w[i + 1..j] == field {
                                let mut v = n + 1;
                                while v < w.len() && ws(w[v]) {
                                    v += 1;
                                }
                                if v >= w.len() || w[v] != b'"' {
                                    return None;
                                }
                                let mut e = v + 1;
                                while e < w.len() {
                                    match w[e] {
                                        b'"' => return Some(w[v + 1..e].to_vec()),
                                        b'\\' => return None,
                                        _ => e += 1,
                                    }
                                }
                                return None;
                            }
                        }
                    }
                    i = j + 1;
                }
                b'{' | b'[' => {
                    depth += 1;
                    i += 1;
                }
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return None;
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
        None
    }

    const WS: &[&str] = &["", "", "", " ", "\t", "\n", "\r\n", "  "];
    const KEYS: &[&str] = &[
        "type", "type", "typ", "type_x", "xtype", "Type", "a", "msg", "data", "",
    ];
    const STRINGS: &[&str] = &[
        "",
        "x",
        "time_request",
        "type",
        r#"\"type\":\"x\""#,
        r#"a\\"#,
        r#"\\\""#,
        r#"\u0022"#,
        "{[}]",
        r#"\"{"#,
        "héllo",
    ];

    fn gen_ws(rng: &mut XorShift, out: &mut String) {
        out.push_str(rng.pick(WS));
    }

    fn gen_value(rng: &mut XorShift, out: &mut String, depth: usize) {
        match rng.below(if depth > 3 { 5 } else { 7 }) {
            0 | 1 => {
                out.push('"');
                out.push_str(rng.pick(STRINGS));
                out.push('"');
            }
            2 => out.push_str(&rng.below(100_000).to_string()),
            3 => out.push_str(rng.pick(&["true", "false", "null", "-1.5e3"])),
            4 => out.push_str(rng.pick(&[r#""type""#, r#""a""#, "0"])),
            5 => {
                gen_object(rng, out, depth + 1);
            }
            _ => {
                out.push('[');
                let n = rng.below(4);
                for k in 0..n {
                    if k > 0 {
                        out.push(',');
                    }
                    gen_ws(rng, out);
                    gen_value(rng, out, depth + 1);
                    gen_ws(rng, out);
                }
                out.push(']');
            }
        }
    }

    /// Writes a valid object; at depth 1 returns what the rules say the sniff of the whole
    /// body gives: `Some((value, index of its closing quote in out))`, or `None`.
    fn gen_object(rng: &mut XorShift, out: &mut String, depth: usize) -> Option<(String, usize)> {
        // `decided` is Some once a top-level key has settled the result.
        let mut decided: Option<Option<(String, usize)>> = None;
        out.push('{');
        let n = rng.below(6);
        for k in 0..n {
            if k > 0 {
                out.push(',');
            }
            gen_ws(rng, out);
            let escaped_key = rng.below(12) == 0;
            let key = if escaped_key {
                rng.pick(&[r#"t\u0079pe"#, r#"a\"b"#, r#"\\"#])
            } else {
                rng.pick(KEYS)
            };
            out.push('"');
            out.push_str(key);
            out.push('"');
            gen_ws(rng, out);
            out.push(':');
            gen_ws(rng, out);
            let value_start = out.len();
            gen_value(rng, out, depth);
            if depth == 1 && decided.is_none() {
                if escaped_key {
                    decided = Some(None);
                } else if key == "type" {
                    let v = &out[value_start..];
                    let plain = v.len() >= 2 && v.starts_with('"') && !v.contains('\\');
                    decided = Some(plain.then(|| (v[1..v.len() - 1].to_string(), out.len() - 1)));
                }
            }
            gen_ws(rng, out);
        }
        out.push('}');
        decided.flatten()
    }

    #[test]
    fn sniff_random_valid_messages_match_generator() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let s = |n| Sniffer::new("type", n);
        for _ in 0..3_000 {
            let mut body = String::new();
            gen_ws(&mut rng, &mut body);
            let expected = gen_object(&mut rng, &mut body, 1);
            gen_ws(&mut rng, &mut body);
            let bytes = body.as_bytes();
            for limit in 0..=bytes.len() + 1 {
                let want = match &expected {
                    Some((v, close)) if *close < limit => Some(v.as_bytes()),
                    _ => None,
                };
                let got = s(limit).sniff(bytes);
                assert_eq!(got, want, "body {body:?} limit {limit}");
                assert_eq!(
                    got.map(<[u8]>::to_vec),
                    reference(b"type", limit, bytes),
                    "body {body:?} limit {limit}"
                );
            }
        }
    }

    #[test]
    fn sniff_never_panics_and_matches_reference() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let fields: [&[u8]; 3] = [b"type", b"a", b""];
        let alphabet = b"{}[]\":,\\ \t\r\natype_x01\xff\x00";
        let check = |body: &[u8], rng: &mut XorShift| {
            let field = rng.pick(&fields);
            let limit = match rng.below(4) {
                0 => usize::MAX,
                1 => 0,
                _ => rng.below(body.len() + 2),
            };
            let sniffer = Sniffer::new(std::str::from_utf8(field).unwrap(), limit);
            let got = sniffer.sniff(body);
            if let Some(v) = got {
                // Always a sub-slice of the window.
                let start = v.as_ptr() as usize - body.as_ptr() as usize;
                assert!(start + v.len() <= body.len().min(limit));
            }
            assert_eq!(
                got.map(<[u8]>::to_vec),
                reference(field, limit, body),
                "body {body:?} limit {limit}"
            );
        };

        for _ in 0..20_000 {
            let len = rng.below(48);
            let body: Vec<u8> = if rng.below(2) == 0 {
                (0..len).map(|_| rng.pick(alphabet)).collect()
            } else {
                (0..len).map(|_| rng.next() as u8).collect()
            };
            check(&body, &mut rng);
            let mut braced = b"{".to_vec();
            braced.extend_from_slice(&body);
            check(&braced, &mut rng);
        }

        // Valid messages, their truncations, and single-byte mutations of them.
        for _ in 0..2_000 {
            let mut body = String::new();
            gen_object(&mut rng, &mut body, 1);
            let bytes = body.into_bytes();
            for end in 0..=bytes.len() {
                check(&bytes[..end], &mut rng);
            }
            for _ in 0..8 {
                let mut m = bytes.clone();
                let at = rng.below(m.len());
                match rng.below(3) {
                    0 => m[at] = rng.pick(alphabet),
                    1 => {
                        m.remove(at);
                    }
                    _ => m.insert(at, rng.pick(alphabet)),
                }
                check(&m, &mut rng);
            }
        }
    }
}
