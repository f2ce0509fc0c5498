//! HTML character references, decoded as Python decodes them: `html.unescape`
//! (which OpenAI's CLIP tokenizer calls twice) and ftfy's stricter
//! `unescape_html` (the first step of `ftfy.fix_text`).
//!
//! The entity table is the `htmlize` crate's (the WHATWG list, the one
//! Python's `html.entities.html5` holds); the matching rules are Python's,
//! which differ from a browser's on numeric references to control characters
//! and noncharacters (Python drops them).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The longest name Python's `html.unescape` tries to read after `&`.
const NAME_MAX_CHARS: usize = 32;
/// The longest run of letters and digits ftfy's `HTML_ENTITY_RE` reads.
const FTFY_NAME_MAX: usize = 24;

/// The expansion of `&name` (with its `;` where the entity has one).
fn entity(name: &str) -> Option<&'static str> {
    let key = format!("&{name}");
    htmlize::ENTITIES
        .get(key.as_bytes())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Python's `html.unescape`: named references (the longest known name, so
/// the legacy ones without `;` too), decimal and hexadecimal references.
pub(crate) fn unescape(text: &str) -> Cow<'_, str> {
    replace_references(text, charref)
}

/// Rewrites `text` at each `&`: `read` gets what follows the `&`, pushes the
/// replacement and returns the bytes it stands for, or 0 to keep the `&` (and
/// go on from the next character, as a regex substitution does).
fn replace_references(
    text: &str,
    mut read: impl FnMut(&str, &mut String) -> usize,
) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let consumed = read(after, &mut out);
        if consumed == 0 {
            out.push('&');
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Reads one reference at the start of `s` (just after `&`) the way
/// `html._charref` does, pushes its replacement and returns the bytes
/// consumed; 0 when nothing matches (`&` stays).
fn charref(s: &str, out: &mut String) -> usize {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        let hex = matches!(bytes.get(1), Some(b'x' | b'X'));
        let start = if hex { 2 } else { 1 };
        let digits = bytes[start..]
            .iter()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return 0;
        }
        let end = start + digits;
        let number = u32::from_str_radix(&s[start..end], if hex { 16 } else { 10 }).ok();
        numeric(number, out);
        return end + usize::from(bytes.get(end) == Some(&b';'));
    }
    let name_end = s
        .char_indices()
        .take(NAME_MAX_CHARS)
        .find(|&(_, c)| matches!(c, '\t' | '\n' | '\x0C' | ' ' | '<' | '&' | '#' | ';'))
        .map_or_else(
            || {
                s.char_indices()
                    .nth(NAME_MAX_CHARS)
                    .map_or(s.len(), |(i, _)| i)
            },
            |(i, _)| i,
        );
    if name_end == 0 {
        return 0;
    }
    let end = name_end + usize::from(bytes.get(name_end) == Some(&b';'));
    named(&s[..end], out);
    end
}

/// `html._replace_charref` for `&#…;`; `None` is a number too large for u32
/// (Python's is unbounded, and all such are past U+10FFFF).
fn numeric(number: Option<u32>, out: &mut String) {
    let Some(n) = number else {
        out.push('\u{FFFD}');
        return;
    };
    match n {
        0 => out.push('\u{FFFD}'),
        0x0D => out.push('\r'),
        // Python maps these C1 references to windows-1252, as browsers do.
        0x80..=0x9F => out.push(super::ftfy::windows_1252_sloppy(n as u8)),
        0xD800..=0xDFFF | 0x11_0000.. => out.push('\u{FFFD}'),
        _ if invalid_codepoint(n) => {}
        _ => out.extend(char::from_u32(n)),
    }
}

/// `html._invalid_codepoints`: references Python drops.
fn invalid_codepoint(n: u32) -> bool {
    matches!(n, 0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF)
        || (n & 0xFFFE) == 0xFFFE
}

/// `html._replace_charref` for a name: the whole name if known, else its
/// longest known prefix of at least two characters, else the text unchanged.
fn named(name: &str, out: &mut String) {
    if let Some(value) = entity(name) {
        out.push_str(value);
        return;
    }
    let cuts: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        if let Some(value) = entity(&name[..cut]) {
            out.push_str(value);
            out.push_str(&name[cut..]);
            return;
        }
    }
    out.push('&');
    out.push_str(name);
}

/// ftfy's `HTML_ENTITIES`: every entity that ends in `;`, and an upper-case
/// spelling of the lower-case ones whose upper-case name means nothing else
/// (`&EACUTE;` is `É`), expanding to the upper-cased text.
static FTFY_ENTITIES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let mut table = HashMap::new();
    for (key, value) in htmlize::ENTITIES.entries() {
        let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value)) else {
            continue;
        };
        if !key.ends_with(';') {
            continue;
        }
        table.insert(key.to_owned(), value.to_owned());
        if key == key.to_lowercase() {
            let upper = key.to_uppercase();
            if unescape(&upper) == upper {
                table.insert(upper, value.to_uppercase());
            }
        }
    }
    table
});

/// ftfy's `fixes.unescape_html`: only references that end in `;` (so
/// "this&not that" stays), through [`FTFY_ENTITIES`] and, for numeric ones,
/// Python's `html.unescape`.
pub(super) fn unescape_ftfy(text: &str) -> Cow<'_, str> {
    replace_references(text, |after, out| {
        let Some(len) = ftfy_entity_len(after) else {
            return 0;
        };
        let entity = format!("&{}", &after[..len]);
        if let Some(value) = FTFY_ENTITIES.get(&entity) {
            out.push_str(value);
        } else if entity.starts_with("&#") {
            // Only a whole reference: "&#65x;" would decode to "Ax;".
            let decoded = unescape(&entity);
            out.push_str(if decoded.contains(';') {
                &entity
            } else {
                &decoded
            });
        } else {
            out.push_str(&entity);
        }
        len
    })
}

/// The length of a match of `&#?[0-9A-Za-z]{1,24};` at the start of `s`,
/// the text after the `&`.
fn ftfy_entity_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let start = usize::from(bytes.first() == Some(&b'#'));
    let run = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    ((1..=FTFY_NAME_MAX).contains(&run) && bytes.get(start + run) == Some(&b';'))
        .then_some(start + run + 1)
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::*;

    #[test]
    fn unescape_reads_what_python_reads() {
        // Expected values printed by Python 3.11's html.unescape.
        let unescape = |text: &str| unescape(text).into_owned();
        check(
            unescape,
            &[
                ("&amp; &lt;b&gt; &quot;x&quot; &#39;", "& <b> \"x\" '"),
                ("&amp;amp;", "&amp;"),
                ("&eacute;t&eacute; &Eacute;", "été É"),
                (
                    "fish &amp chips &copy 2024 &notit; &ampxyz",
                    "fish & chips © 2024 ¬it; &xyz",
                ),
                ("&#65;&#x42;&#X43;&#0068 &#x1F600;", "ABCD 😀"),
                (
                    "&#0; &#13; &#128; &#x81; &#1; &#11; &#xD800; &#x110000; &#99999999999;",
                    "\u{FFFD} \r € \u{81}   \u{FFFD} \u{FFFD} \u{FFFD}",
                ),
                ("&#xFFFE;&#xFDD0;&#x10FFFF;x", "x"),
                (
                    "&#; &#x; &# &; & &nosuchthing; &zz",
                    "&#; &#x; &# &; & &nosuchthing; &zz",
                ),
                ("&NotNestedGreaterGreater; &fjlig;", "\u{2AA2}\u{338} fj"),
                ("&ÄÖÜ; &Aacute", "&ÄÖÜ; Á"),
            ],
        );
    }

    #[test]
    fn ftfy_unescapes_only_terminated_references() {
        // Expected values printed by ftfy 6.3.1's fixes.unescape_html.
        let unescape = |text: &str| unescape_ftfy(text).into_owned();
        check(
            unescape,
            &[
                ("this&not that", "this&not that"),
                (
                    "P&EACUTE;REZ &ntilde; &Ntilde; &NTILDE; &nTILDE;",
                    "PÉREZ ñ Ñ Ñ &nTILDE;",
                ),
                ("BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE"),
                ("&amp;amp; &#x2019;s &#1; &#xZZ;", "&amp; ’s  &#xZZ;"),
                (
                    "&Jscr;ohn &HilbertSpace;ancock &checkmark;",
                    "𝒥ohn ℋancock ✓",
                ),
                (
                    "&abcdefghijklmnopqrstuvwxyz; &amp",
                    "&abcdefghijklmnopqrstuvwxyz; &amp",
                ),
                // A semicolon in the result means "not a whole reference" to ftfy.
                ("&#59; &#65x; &#x3B;", "&#59; &#65x; &#x3B;"),
            ],
        );
    }
}
