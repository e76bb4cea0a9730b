//! Fast readers for the two PostScript-like inputs pdf-extract parses for every font: a
//! ToUnicode CMap (bfchar/bfrange) and the built-in encoding of an embedded Type 1 font.
//!
//! They give the same maps as `adobe_cmap_parser::get_unicode_map` and
//! `type1_encoding_parser::get_encoding_map` (whose parser-combinator lexers allocate for every
//! byte: most of the time spent on a typical PDF), and give up (`None`) on anything they do not
//! read exactly like them, so the caller falls back to the original.

use std::collections::HashMap;

#[derive(Debug, PartialEq)]
pub(crate) enum Tok {
    Int(i64),
    /// A hex or literal string, as bytes.
    Str(Vec<u8>),
    Name(Vec<u8>),
    Op(Vec<u8>),
    Arr(Vec<Tok>),
    /// A procedure, dictionary, boolean or real: never looked into here.
    Other,
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// CMaps allow whitespace between the digits of a hex string; Type 1 fonts do not.
    hex_spaces: bool,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'\0')
}

fn is_delim(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%' | b'#')
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl<'a> Lexer<'a> {
    fn skip(&mut self) {
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if is_space(c) {
                self.i += 1;
            } else if c == b'%' {
                while self.i < self.s.len() && !matches!(self.s[self.i], b'\r' | b'\n') {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// The next value, `None` at the end, `Err` where this reader would not read it exactly as
    /// the original does.
    fn value(&mut self) -> Result<Option<Tok>, ()> {
        self.skip();
        let Some(c) = self.peek() else { return Ok(None) };
        let rest = &self.s[self.i..];
        // As the original: `true`/`false` are read wherever they start a value ("trueX" is
        // `true` then the operator `X`).
        for word in [&b"true"[..], b"false"] {
            if rest.starts_with(word) {
                self.i += word.len();
                return Ok(Some(Tok::Other));
            }
        }
        match c {
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                let start = self.i;
                if matches!(c, b'+' | b'-') {
                    self.i += 1;
                }
                let digits = self.i;
                while self.peek().is_some_and(|d| d.is_ascii_digit()) {
                    self.i += 1;
                }
                if self.i == digits {
                    // No digits before: a real like `.5` or `-.5` (digits must follow the dot).
                    if self.peek() != Some(b'.') {
                        return Err(());
                    }
                    self.i += 1;
                    let after = self.i;
                    while self.peek().is_some_and(|d| d.is_ascii_digit()) {
                        self.i += 1;
                    }
                    return if self.i == after { Err(()) } else { Ok(Some(Tok::Other)) };
                }
                // `0.001` reads as the integer 0, then the real `.001`, as in the original.
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| ())?;
                Ok(Some(Tok::Int(text.parse().map_err(|_| ())?)))
            }
            b'/' => {
                self.i += 1;
                let start = self.i;
                while self.peek().is_some_and(|d| !is_delim(d)) {
                    self.i += 1;
                }
                if self.peek() == Some(b'#') {
                    return Err(());
                }
                Ok(Some(Tok::Name(self.s[start..self.i].to_vec())))
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'*' | b'\'' | b'"' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphabetic() || matches!(d, b'*' | b'\'' | b'"'))
                {
                    self.i += 1;
                }
                Ok(Some(Tok::Op(self.s[start..self.i].to_vec())))
            }
            b'(' => {
                self.i += 1;
                let mut bytes = Vec::new();
                self.literal(&mut bytes, 0)?;
                Ok(Some(Tok::Str(bytes)))
            }
            b'<' if rest.starts_with(b"<<") => {
                self.i += 2;
                self.skip_nested(b'>')
            }
            b'<' => {
                self.i += 1;
                let mut bytes = Vec::new();
                let mut high: Option<u8> = None;
                loop {
                    let Some(d) = self.peek() else { return Err(()) };
                    self.i += 1;
                    if d == b'>' {
                        return if high.is_some() { Err(()) } else { Ok(Some(Tok::Str(bytes))) };
                    }
                    if is_space(d) {
                        if !self.hex_spaces || high.is_some() {
                            return Err(());
                        }
                        continue;
                    }
                    let v = hex(d).ok_or(())?;
                    match high.take() {
                        Some(h) => bytes.push(h << 4 | v),
                        None => high = Some(v),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip();
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Some(Tok::Arr(items)));
                        }
                        None => return Err(()),
                        _ => items.push(self.value()?.ok_or(())?),
                    }
                }
            }
            b'{' => {
                self.i += 1;
                self.skip_nested(b'}')
            }
            _ => Err(()),
        }
    }

    /// The rest of a literal string after its `(`, escapes resolved, nested parentheses kept.
    fn literal(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), ()> {
        if depth > 64 {
            return Err(());
        }
        while let Some(d) = self.peek() {
            self.i += 1;
            match d {
                b')' => return Ok(()),
                b'(' => {
                    out.push(b'(');
                    self.literal(out, depth + 1)?;
                    out.push(b')');
                }
                b'\\' => match self.peek() {
                    Some(e @ (b'\\' | b'(' | b')')) => {
                        self.i += 1;
                        out.push(e);
                    }
                    Some(b'n') => { self.i += 1; out.push(b'\n'); }
                    Some(b'r') => { self.i += 1; out.push(b'\r'); }
                    Some(b't') => { self.i += 1; out.push(b'\t'); }
                    Some(b'b') => { self.i += 1; out.push(0x08); }
                    Some(b'f') => { self.i += 1; out.push(0x0C); }
                    Some(b'0'..=b'7') => {
                        let mut v: u32 = 0;
                        let mut n = 0;
                        while n < 3 && self.peek().is_some_and(|o| (b'0'..=b'7').contains(&o)) {
                            v = v * 8 + (self.s[self.i] - b'0') as u32;
                            self.i += 1;
                            n += 1;
                        }
                        // The original's u8::from_str_radix fails past 255: it would stop.
                        if v > 255 {
                            return Err(());
                        }
                        out.push(v as u8);
                    }
                    Some(b'\r') => {
                        self.i += 1;
                        if self.peek() == Some(b'\n') {
                            self.i += 1;
                        }
                    }
                    Some(b'\n') => self.i += 1,
                    _ => {}
                },
                _ => out.push(d),
            }
        }
        Err(())
    }

    /// Skips a procedure or a dictionary up to its closing bracket (`}` or `>>`).
    fn skip_nested(&mut self, close: u8) -> Result<Option<Tok>, ()> {
        loop {
            self.skip();
            match self.peek() {
                None => return Err(()),
                Some(b'}') if close == b'}' => {
                    self.i += 1;
                    return Ok(Some(Tok::Other));
                }
                Some(b'>') if close == b'>' && self.s[self.i..].starts_with(b">>") => {
                    self.i += 2;
                    return Ok(Some(Tok::Other));
                }
                Some(b'>' | b'}' | b']' | b')') => return Err(()),
                _ => {
                    self.value()?;
                }
            }
        }
    }
}

fn as_code(s: &[u8]) -> u32 {
    s.iter().fold(0u32, |code, &c| (code << 8) | c as u32)
}

/// A ToUnicode CMap's map from character codes to UTF-16BE bytes.
pub(crate) fn unicode_map(input: &[u8]) -> Option<HashMap<u32, Vec<u8>>> {
    let mut lexer = Lexer { s: input, i: 0, hex_spaces: true };
    let mut toks = Vec::new();
    while let Some(t) = lexer.value().ok()? {
        toks.push(t);
    }
    let count = |i: usize| match i.checked_sub(1).and_then(|j| toks.get(j)) {
        Some(Tok::Int(c)) => Some(*c),
        _ => None,
    };
    let string = |i: usize| match toks.get(i) {
        Some(Tok::Str(s)) => Some(s),
        _ => None,
    };
    let mut map = HashMap::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Op(o) if o == b"beginbfchar" => {
                let n = count(i)?;
                i += 1;
                for _ in 0..n {
                    map.insert(as_code(string(i)?), string(i + 1)?.clone());
                    i += 2;
                }
                i += 1;
            }
            Tok::Op(o) if o == b"beginbfrange" => {
                let n = count(i)?;
                i += 1;
                for _ in 0..n {
                    let (lo, hi) = (as_code(string(i)?), as_code(string(i + 1)?));
                    match toks.get(i + 2)? {
                        Tok::Str(start) if start.len() == 4 => {
                            let val = as_code(start);
                            for c in lo..=hi {
                                map.insert(c, val.wrapping_add(c - lo).to_be_bytes().to_vec());
                            }
                        }
                        Tok::Str(start) if start.len() == 2 => {
                            let val = as_code(start) as u16;
                            for c in lo..=hi {
                                map.insert(c, val.wrapping_add((c - lo) as u16).to_be_bytes().to_vec());
                            }
                        }
                        Tok::Arr(codes) => {
                            if hi < lo || (hi - lo + 1) as usize != codes.len() {
                                return None;
                            }
                            for (c, code) in (lo..=hi).zip(codes) {
                                let Tok::Str(s) = code else { return None };
                                map.insert(c, s.clone());
                            }
                        }
                        _ => return None,
                    }
                    i += 3;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Some(map)
}

/// An embedded Type 1 font's own encoding (`/Encoding 256 array ... dup 32 /space put ...
/// def`), from its clear-text part.
pub(crate) fn type1_encoding(input: &[u8]) -> Option<HashMap<u32, Vec<u8>>> {
    let mut lexer = Lexer { s: input, i: 0, hex_spaces: false };
    let mut toks = Vec::new();
    // The original reads values until one does not lex: the encrypted part after `eexec`.
    loop {
        match lexer.value() {
            Ok(Some(Tok::Op(o))) if o == b"eexec" => {
                toks.push(Tok::Op(o));
                break;
            }
            Ok(Some(t)) => toks.push(t),
            Ok(None) => break,
            // Before `eexec` the original would stop here and we cannot say what it would read.
            Err(()) => return None,
        }
    }
    let mut map = HashMap::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Op(o) if o == b"array" => {
                let Some(Tok::Int(_)) = i.checked_sub(1).and_then(|j| toks.get(j)) else { return None };
                let Some(Tok::Name(name)) = i.checked_sub(2).and_then(|j| toks.get(j)) else { return None };
                i += 1;
                if name == b"Encoding" {
                    while i < toks.len() {
                        match &toks[i] {
                            Tok::Op(o) if o == b"put" => {
                                let Some(Tok::Name(glyph)) = toks.get(i - 1) else { return None };
                                let Some(Tok::Int(id)) = toks.get(i - 2) else { return None };
                                map.insert(*id as u32, glyph.clone());
                            }
                            Tok::Op(o) if o == b"def" => break,
                            _ => {}
                        }
                        i += 1;
                    }
                }
            }
            _ => i += 1,
        }
    }
    Some(map)
}
