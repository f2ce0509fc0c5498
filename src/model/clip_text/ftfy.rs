//! A port of `ftfy.fix_text` (ftfy 6.3.1) with its default configuration, the
//! first step of OpenAI CLIP's text cleaning.
//!
//! The steps, their order and the fixed-point loops are ftfy's
//! (`ftfy/__init__.py`: `fix_text`, `fix_and_explain`, `fix_encoding`), each
//! fixer is its function in `ftfy/fixes.py`, and the character tables are
//! ftfy's own (`tables.rs`, generated from it). What cannot happen in Rust is
//! left out: `fix_surrogates` (a `str` holds no surrogates) and the bytes
//! input error. Known limits: the Unicode data (case mappings, NFC/NFKC,
//! character classes) are Rust's and the `unicode-normalization` crate's,
//! newer than Python 3.11's Unicode 14, so characters assigned since then can
//! differ; the regex crate's leftmost-first matching stands in for Python's
//! backtracking, which finds the same matches for these patterns (their
//! look-behind is checked by hand). On 100,000 random texts made of mojibake,
//! entities and controls, the whole cleaning (`super::clean`) differed from
//! OpenAI's once, on such a character (U+1C89, cased since Unicode 16).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use unicode_normalization::UnicodeNormalization;

use super::html;
use super::tables;

/// ftfy's `max_decode_length`: the longest segment fixed at once, in characters.
const MAX_DECODE_LENGTH: usize = 1_000_000;

/// `ftfy.fix_text(text)` with the default `TextFixerConfig`.
pub(super) fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // "auto": references are decoded until a segment shows a literal `<`
    // (then the text is HTML, whose entities mean markup), and, as in ftfy,
    // the decision then holds for the rest of the text.
    let mut unescape_html = true;
    let mut pos = 0;
    while pos < text.len() {
        let mut end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        if let Some((cut, _)) = text[pos..end].char_indices().nth(MAX_DECODE_LENGTH) {
            end = pos + cut;
        }
        let segment = &text[pos..end];
        unescape_html &= !segment.contains('<');
        out.push_str(&fix_segment(segment, unescape_html));
        pos = end;
    }
    out
}

/// `fix_and_explain`: every fixer in order, until the text stops changing.
fn fix_segment(segment: &str, unescape_html: bool) -> String {
    let mut text = segment.to_owned();
    loop {
        let original = text.clone();
        if unescape_html {
            text = html::unescape_ftfy(&text).into_owned();
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text).into_owned();
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text).into_owned();
        text = remove_control_chars(&text);
        text = text.nfc().collect();
        if text == original {
            return text;
        }
    }
}

/// One of the single-byte encodings of `tables::CHARMAPS`.
struct Charmap {
    name: &'static str,
    /// ftfy's "sloppy" codecs: byte 0x1A stands for U+FFFD.
    sloppy: bool,
    /// The characters of bytes 0x80 to 0xFF.
    high: Vec<char>,
    /// `high` inverted, sorted by character.
    encode: Vec<(char, u8)>,
}

static CHARMAPS: LazyLock<Vec<Charmap>> = LazyLock::new(|| {
    tables::CHARMAPS
        .iter()
        .map(|&(name, sloppy, high)| {
            let high: Vec<char> = high.chars().collect();
            let mut encode: Vec<(char, u8)> = high
                .iter()
                .zip(0x80..=0xFF_u8)
                .map(|(&c, b)| (c, b))
                .collect();
            encode.sort_unstable();
            Charmap {
                name,
                sloppy,
                high,
                encode,
            }
        })
        .collect()
});

impl Charmap {
    /// `text.encode(encoding)`, or `None` where a character has no byte
    /// (ftfy's `possible_encoding` is false).
    fn encode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars()
            .map(|c| match c {
                '\u{1A}' if self.sloppy => None,
                '\u{FFFD}' if self.sloppy => Some(0x1A),
                c if c.is_ascii() => Some(c as u8),
                c => self
                    .encode
                    .binary_search_by_key(&c, |&(k, _)| k)
                    .ok()
                    .map(|i| self.encode[i].1),
            })
            .collect()
    }

    fn decode_byte(&self, byte: u8) -> char {
        match byte {
            0x1A if self.sloppy => '\u{FFFD}',
            0x00..=0x7F => byte as char,
            _ => self.high[usize::from(byte - 0x80)],
        }
    }
}

/// The character of a byte in ftfy's sloppy windows-1252 (undefined bytes
/// read as Latin-1).
pub(super) fn windows_1252_sloppy(byte: u8) -> char {
    CHARMAPS[1].decode_byte(byte)
}

static BADNESS: LazyLock<Regex> = LazyLock::new(|| compile(tables::BADNESS));
static UTF8_DETECTOR: LazyLock<Regex> = LazyLock::new(|| compile(tables::UTF8_DETECTOR));
static UTF8_CONTINUATION_STRICT: LazyLock<Regex> =
    LazyLock::new(|| compile(tables::UTF8_CONTINUATION_STRICT));

/// `chardata.ALTERED_UTF8_RE`: UTF-8 sequences that would be valid if a
/// space were byte 0xA0.
static ALTERED_UTF8: LazyLock<BytesRegex> = LazyLock::new(|| {
    compile_bytes(
        r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9] |[\xe2\xe3] [\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf] |\xf0 [\x80-\xbf][\x80-\xbf]|\xf0[\x80-\xbf] [\x80-\xbf]|\xf0[\x80-\xbf][\x80-\xbf] ",
    )
});

/// `chardata.LOSSY_UTF8_RE`: UTF-8 sequences some of whose bytes were lost
/// (0x1A stands for a U+FFFD; `?` once per sequence).
static LOSSY_UTF8: LazyLock<BytesRegex> = LazyLock::new(|| {
    compile_bytes(concat!(
        r"(?-u)[\xc2-\xdf]\x1a|[\xc2-\xc3]\?",
        r"|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]",
        r"|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]",
        r"|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]",
        r"|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]",
        r"|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]",
        r"|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
    ))
});

/// `fixes.ANSI_RE` (Python's `\d` is Unicode's, as the regex crate's).
static ANSI: LazyLock<Regex> = LazyLock::new(|| compile(r"\x1b\[(?:\d|;)*[a-zA-Z]"));

// The patterns are constants of this file and of tables.rs, and a unit test
// compiles every one: failing here is a bug of this module, not of the input.
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a valid built-in pattern")
}

fn compile_bytes(pattern: &str) -> BytesRegex {
    BytesRegex::new(pattern).expect("a valid built-in pattern")
}

/// `badness.is_bad`: the text contains a sequence typical of mojibake.
fn is_bad(text: &str) -> bool {
    BADNESS.is_match(text)
}

/// `fix_encoding`: single steps until the text stops changing.
fn fix_encoding(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        let fixed = fix_encoding_step(&text);
        if fixed == text {
            return text;
        }
        text = fixed;
    }
}

/// `_fix_encoding_one_step_and_explain`.
fn fix_encoding_step(text: &str) -> String {
    if text.is_ascii() || !is_bad(text) {
        return text.to_owned();
    }
    let mut latin_1_possible = false;
    for charmap in CHARMAPS.iter() {
        let Some(mut bytes) = charmap.encode(text) else {
            continue;
        };
        latin_1_possible |= charmap.name == "latin-1";
        // MacRoman is left out: an en dash and a space would match.
        if charmap.name != "macroman" && ALTERED_UTF8.is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if charmap.sloppy {
            bytes = LOSSY_UTF8
                .replace_all(&bytes, "\u{FFFD}".as_bytes())
                .into_owned();
        }
        if let Some(fixed) = decode_utf8_variants(&bytes) {
            return fixed;
        }
    }
    if find_utf8_mojibake(text, 0).is_some() {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return fixed;
        }
    }
    // ftfy returns early here when "windows-1252" is a possible encoding,
    // but its list only ever names "sloppy-windows-1252", so it never does.
    if latin_1_possible
        && let Some(fixed) = latin_1_as_windows_1252(text)
        && fixed != text
    {
        return fixed;
    }
    if text.chars().any(is_c1) {
        return fix_c1_controls(text).into_owned();
    }
    text.to_owned()
}

/// `fixes.restore_byte_a0`: puts back the 0xA0 bytes that became spaces.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE, `\xc3 (?! |quele|quela|quilo|s )`: a lone "à" keeps its
    // space ("Ã la mode" is "à la mode"), Portuguese "às", "àquele"... excepted.
    let mut out = Vec::with_capacity(bytes.len() + 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xC3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            let excepted = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|word| after.starts_with(word));
            if !excepted {
                out.extend_from_slice(&[0xC3, 0xA0, b' ']);
                i += 2;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    ALTERED_UTF8
        .replace_all(&out, |m: &regex::bytes::Captures<'_>| {
            m[0].iter()
                .map(|&b| if b == b' ' { 0xA0 } else { b })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

/// ftfy's "utf-8-variants" codec, strict: UTF-8, plus CESU-8's surrogate
/// pairs and Java's `C0 80` for U+0000. `None` where Python raises.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let special = if bytes[i] == 0xC0 && bytes.get(i + 1) == Some(&0x80) {
            Some(('\0', 2))
        } else if let Some(
            &[
                0xED,
                b1 @ 0xA0..=0xAF,
                b2 @ 0x80..=0xBF,
                0xED,
                b4 @ 0xB0..=0xBF,
                b5 @ 0x80..=0xBF,
            ],
        ) = bytes.get(i..i + 6)
        {
            let code = 0x10000
                + ((u32::from(b1) & 0x0F) << 16)
                + ((u32::from(b2) & 0x3F) << 10)
                + ((u32::from(b4) & 0x0F) << 6)
                + (u32::from(b5) & 0x3F);
            Some((char::from_u32(code)?, 6))
        } else {
            None
        };
        match special {
            Some((c, len)) => {
                out.push_str(std::str::from_utf8(&bytes[start..i]).ok()?);
                out.push(c);
                i += len;
                start = i;
            }
            None => i += 1,
        }
    }
    out.push_str(std::str::from_utf8(&bytes[start..]).ok()?);
    Some(out)
}

/// The first match of `UTF8_DETECTOR_RE` at or after byte `from`: a run of
/// UTF-8-looking characters that does not follow a strict continuation
/// character (the look-behind ftfy's regex has and Rust's has not).
fn find_utf8_mojibake(text: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(m) = UTF8_DETECTOR.find_at(text, at) {
        let follows_strict = text[..m.start()].chars().next_back().is_some_and(|c| {
            let mut buf = [0; 4];
            UTF8_CONTINUATION_STRICT.is_match(c.encode_utf8(&mut buf))
        });
        if !follows_strict {
            return Some((m.start(), m.end()));
        }
        // Python tries the next position; the run found may start later.
        at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// `fixes.decode_inconsistent_utf8`: fixes each UTF-8-looking run on its own.
fn decode_inconsistent_utf8(text: &str) -> String {
    let total = text.chars().count();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    while let Some((start, end)) = find_utf8_mojibake(text, last) {
        out.push_str(&text[last..start]);
        let run = &text[start..end];
        if run.chars().count() < total && is_bad(run) {
            out.push_str(&fix_encoding(run));
        } else {
            out.push_str(run);
        }
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// `text.encode("latin-1").decode("windows-1252")`, strict (`None` where a
/// byte is undefined); the text must be Latin-1.
fn latin_1_as_windows_1252(text: &str) -> Option<String> {
    text.chars()
        .map(|c| {
            let code = c as u32;
            match u8::try_from(code) {
                Ok(byte) if tables::WINDOWS_1252_UNDEFINED.contains(&byte) => None,
                Ok(byte) if is_c1(c) => Some(windows_1252_sloppy(byte)),
                _ => Some(c),
            }
        })
        .collect()
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9F}').contains(&c)
}

/// `fixes.fix_c1_controls`: C1 controls read as windows-1252, as browsers do.
fn fix_c1_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_c1) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if is_c1(c) {
                    windows_1252_sloppy(c as u8)
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// `chardata.LIGATURES`: Latin ligatures and legacy digraphs taken apart
/// (not `æ` and others used on purpose).
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ", // Dutch ligatures
        'ĳ' => "ij",
        'ŉ' => "ʼn", // Afrikaans digraph meant to avoid auto-curled quote
        'Ǳ' => "DZ", // Serbian/Croatian digraphs for Cyrillic conversion
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff", // Latin typographical ligatures
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match ligature(c) {
            Some(letters) => out.push_str(letters),
            None => out.push(c),
        }
    }
    out
}

/// `fixes.fix_character_width`: full-width and half-width forms
/// (U+FF01 to U+FFEF) to their NFKC form, the ideographic space to a space.
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{FF01}'..='\u{FFEF}' => out.extend(std::iter::once(c).nfkc()),
            c => out.push(c),
        }
    }
    out
}

/// `fixes.uncurl_quotes`.
fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{02BC}' | '\u{2018}'..='\u{201B}' => '\'',
            '\u{201C}'..='\u{201F}' => '"',
            c => c,
        })
        .collect()
}

/// `fixes.fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 to `\n`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => '\n',
            c => c,
        })
        .collect()
}

/// `fixes.remove_terminal_escapes`: ANSI colour and cursor sequences.
fn remove_terminal_escapes(text: &str) -> Cow<'_, str> {
    ANSI.replace_all(text, "")
}

/// `fixes.remove_control_chars` (`chardata.CONTROL_CHARS`): C0 controls but
/// tab, newline, form feed and carriage return; DEL; the deprecated Arabic
/// format controls; the byte order mark; the interlinear annotation
/// characters and the object replacement character.
fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !matches!(c,
                '\u{00}'..='\u{08}' | '\u{0B}' | '\u{0E}'..='\u{1F}' | '\u{7F}'
                | '\u{206A}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFC}')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_patterns_compile() {
        for regex in [&BADNESS, &UTF8_DETECTOR, &UTF8_CONTINUATION_STRICT, &ANSI] {
            LazyLock::force(regex);
        }
        LazyLock::force(&ALTERED_UTF8);
        LazyLock::force(&LOSSY_UTF8);
        assert_eq!(CHARMAPS.len(), 10);
        assert!(CHARMAPS.iter().all(|c| c.high.len() == 128));
    }

    /// Expected values are what ftfy 6.3.1 prints for each input.
    fn check(cases: &[(&str, &str)]) {
        super::super::tests::check(fix_text, cases);
    }

    #[test]
    fn mojibake_of_utf8_read_as_a_single_byte_encoding() {
        check(&[
            ("cafÃ©", "café"),
            ("schÃ¶n", "schön"),
            ("âœ” No problems", "✔ No problems"),
            (
                "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.",
                "The Mona Lisa doesn't have eyebrows.",
            ),
            ("voilÃ le travail", "voilà le travail"),
            ("Ã la mode", "à la mode"),
            ("ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Привет"),
            ("Î•Î»Î»Î·Î½Î¹ÎºÎ¬", "Ελληνικά"),
            ("æ—¥æœ¬èªž", "日本語"),
            ("l’humanitÃ©", "l'humanité"),
            ("â€œ like this â€�", "\" like this �"),
            ("naïve café", "naïve café"),
            ("Ã©", "é"),
        ]);
    }

    #[test]
    fn legitimate_text_is_left_alone() {
        check(&[
            ("a red circle", "a red circle"),
            ("Ärger über Öl", "Ärger über Öl"),
            ("(ง'⌣')ง", "(ง'⌣')ง"),
            ("¯\\_(ツ)_/¯", "¯\\_(ツ)_/¯"),
            ("Москва", "Москва"),
            ("🐶🏖️", "🐶🏖️"),
            ("", ""),
        ]);
    }

    #[test]
    fn html_entities_are_decoded_unless_the_text_is_html() {
        check(&[
            (
                "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!",
                "Broken text… it's flubberific!",
            ),
            ("&macr;\\_(ã\u{83}\u{84})_/&macr;", "¯\\_(ツ)_/¯"),
            ("<b>fish &amp; chips</b>", "<b>fish &amp; chips</b>"),
            (
                "fish &amp; chips\n<b>&amp;</b>",
                "fish & chips\n<b>&amp;</b>",
            ),
            ("<p>\nfish &amp; chips", "<p>\nfish &amp; chips"),
        ]);
    }

    #[test]
    fn ligatures_widths_quotes_breaks_and_controls() {
        check(&[
            ("ﬂuﬃeﬆ ĳs ǅ", "fluffiest ijs Dž"),
            ("ＬＯＵＤ　ＮＯＩＳＥＳ", "LOUD NOISES"),
            ("Ｕﾀｰﾝ", "Uターン"),
            (
                "\u{201C}here\u{2019}s a test\u{201D} \u{2018}ok\u{201B}",
                "\"here's a test\" 'ok'",
            ),
            ("a\r\nb\rc\u{2028}d\u{2029}e", "a\nb\nc\nd\ne"),
            ("\u{1b}[36;44mI'm blue\u{1b}[0m", "I'm blue"),
            (
                "\u{feff}bom\u{0}nul\u{7}bell\u{7f}\u{206a}\u{fffc}\ttab\u{c}",
                "bomnulbell\ttab\u{c}",
            ),
            ("e\u{301}", "é"),
            ("\u{80}uro \u{93}quoted\u{94}", "€uro \"quoted\""),
        ]);
    }

    #[test]
    fn utf8_variants_decode_cesu8_and_java_nulls() {
        assert_eq!(
            decode_utf8_variants(b"\xed\xa0\xbd\xed\xb8\x8d").as_deref(),
            Some("😍")
        );
        assert_eq!(decode_utf8_variants(b"a\xc0\x80b").as_deref(), Some("a\0b"));
        assert_eq!(decode_utf8_variants(b"\xed\xa0\x80"), None);
        assert_eq!(
            decode_utf8_variants("한국어".as_bytes()).as_deref(),
            Some("한국어")
        );
    }
}
