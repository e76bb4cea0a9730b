//! A hand-written reader for page content streams: the same operations as
//! `lopdf::content::Content::decode`, whose parser-combinator reader allocates for every token
//! and was about a third of the time spent on a typical PDF.
//!
//! It follows lopdf 0.42's grammar rule by rule: the same alternatives in the same order and
//! the same quirks (an operand ends at `content_space`, that is space, tab, CR or LF, while
//! arrays and dictionaries skip all PDF whitespace and comments; `[1 0 R]` holds a reference;
//! numbers come out as `f32::from_str` and `i64::from_str` give them). Where it stops (an
//! inline image, deep nesting, or a parse that stops early, which lopdf turns into a page cut
//! short), the operations read so far are lopdf's first ones, and the caller asks lopdf for
//! the rest. `PDF_EXTRACT_CHECK_FASTLEX=1` reads every stream both ways and panics on a
//! difference.

use lopdf::content::Operation;
use lopdf::{Dictionary, Object, StringFormat};

/// Nesting of arrays and dictionaries, and of parentheses in a string, read here; deeper is
/// left to lopdf (whose limits are 100).
const MAX_DEPTH: usize = 32;

pub(crate) struct Reader<'a> {
    s: &'a [u8],
    i: usize,
    /// Byte buffers of strings and names already handed over and given back (see `recycle`).
    bufs: Vec<Vec<u8>>,
    /// The same for arrays.
    arrays: Vec<Vec<Object>>,
}

/// Buffers kept for reuse, at most.
const POOL: usize = 64;

/// 10^k for the exact fast path of `number`.
const POW10: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

#[inline]
fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\0' | b'\x0C')
}

#[inline]
fn is_delimiter(c: u8) -> bool {
    matches!(c, b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%')
}

#[inline]
fn is_regular(c: u8) -> bool {
    !is_whitespace(c) && !is_delimiter(c)
}

#[inline]
fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl<'a> Reader<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline]
    fn at(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    #[inline]
    fn starts_with(&self, t: &[u8]) -> bool {
        self.s[self.i..].starts_with(t)
    }

    /// lopdf `content_space`: space, tab, CR and LF only.
    #[inline]
    fn content_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.i += 1;
        }
    }

    /// lopdf `eol`: CRLF, LF or CR.
    #[inline]
    fn eol(&mut self) -> bool {
        match self.peek() {
            Some(b'\r') => {
                self.i += if self.at(1) == Some(b'\n') { 2 } else { 1 };
                true
            }
            Some(b'\n') => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }

    /// lopdf `comment`: `%` up to and including an end of line (none at the end: no comment).
    fn comment(&mut self) -> bool {
        if self.peek() != Some(b'%') {
            return false;
        }
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            if c == b'\r' || c == b'\n' {
                break;
            }
            self.i += 1;
        }
        if self.eol() {
            true
        } else {
            self.i = start;
            false
        }
    }

    /// lopdf `space`: whitespace (NUL and form feed too) and comments.
    fn space(&mut self) {
        loop {
            match self.peek() {
                Some(c) if is_whitespace(c) => self.i += 1,
                Some(b'%') => {
                    if !self.comment() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// lopdf `real` then `integer`: `[+-]? (d+ '.' d* | '.' d+)` as f32, else `[+-]? d+` as
    /// i64. No number here: `None` with the position unchanged.
    ///
    /// What `from_str` would give, without it where that is exact: an integer of up to 18
    /// digits, and a real whose digits make at most 2^24 with at most 10 after the point
    /// (both exact in f32, so one division rounds correctly: Clinger's fast path, the one
    /// Rust's own parser takes for such input).
    fn number(&mut self) -> Option<Object> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if let Some(b'+' | b'-') = self.peek() {
            self.i += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0usize;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            mantissa = mantissa.wrapping_mul(10).wrapping_add((d - b'0') as u64);
            digits += 1;
            self.i += 1;
        }
        let int_digits = digits;
        let mut frac_digits = 0usize;
        let is_real = if int_digits > 0 {
            self.peek() == Some(b'.')
        } else {
            self.peek() == Some(b'.') && matches!(self.at(1), Some(b'0'..=b'9'))
        };
        if is_real {
            self.i += 1;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                mantissa = mantissa.wrapping_mul(10).wrapping_add((d - b'0') as u64);
                digits += 1;
                frac_digits += 1;
                self.i += 1;
            }
            if digits <= 19 && mantissa <= 1 << 24 && frac_digits <= 10 {
                let v = mantissa as f32 / POW10[frac_digits];
                return Some(Object::Real(if negative { -v } else { v }));
            }
            // ASCII, so UTF-8.
            let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
            return match text.parse::<f32>() {
                Ok(v) => Some(Object::Real(v)),
                Err(_) => {
                    self.i = start;
                    None
                }
            };
        }
        if int_digits > 0 {
            if int_digits <= 18 {
                let v = mantissa as i64;
                return Some(Object::Integer(if negative { -v } else { v }));
            }
            if let Ok(v) = std::str::from_utf8(&self.s[start..self.i]).unwrap().parse::<i64>() {
                return Some(Object::Integer(v));
            }
        }
        self.i = start;
        None
    }

    /// lopdf `name`: `/` then regular bytes and `#hh` escapes, up to the first byte that is
    /// neither (a `#` without two hex digits ends it).
    fn name(&mut self) -> Option<Vec<u8>> {
        if self.peek() != Some(b'/') {
            return None;
        }
        self.i += 1;
        let mut out = self.bufs.pop().unwrap_or_default();
        while let Some(c) = self.peek() {
            if c == b'#' {
                match (self.at(1).and_then(hex), self.at(2).and_then(hex)) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        self.i += 3;
                    }
                    _ => break,
                }
            } else if is_regular(c) {
                out.push(c);
                self.i += 1;
            } else {
                break;
            }
        }
        Some(out)
    }

    /// lopdf `literal_string`, at `(`; `None` (position unchanged) where lopdf's fails.
    fn literal_string(&mut self, depth: usize) -> Option<Vec<u8>> {
        let start = self.i;
        let mut out = self.bufs.pop().unwrap_or_default();
        if self.inner_literal(&mut out, depth) {
            Some(out)
        } else {
            self.i = start;
            self.give_back(out);
            None
        }
    }

    /// `(` inner `)`, the inner bytes appended to `out`.
    fn inner_literal(&mut self, out: &mut Vec<u8>, depth: usize) -> bool {
        debug_assert_eq!(self.peek(), Some(b'('));
        self.i += 1;
        loop {
            let Some(c) = self.peek() else { return false };
            match c {
                b')' => {
                    self.i += 1;
                    return true;
                }
                b'\\' => {
                    let Some(e) = self.at(1) else { return false };
                    self.i += 1;
                    match e {
                        b'0'..=b'7' => {
                            let mut v: u16 = 0;
                            let mut n = 0;
                            while n < 3 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + (d - b'0') as u16;
                                        self.i += 1;
                                        n += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(v as u8);
                        }
                        b'\r' | b'\n' => {
                            self.eol();
                        }
                        b'n' => { out.push(b'\n'); self.i += 1; }
                        b'r' => { out.push(b'\r'); self.i += 1; }
                        b't' => { out.push(b'\t'); self.i += 1; }
                        b'b' => { out.push(b'\x08'); self.i += 1; }
                        b'f' => { out.push(b'\x0C'); self.i += 1; }
                        _ => { out.push(e); self.i += 1; }
                    }
                }
                b'\r' => {
                    if self.at(1) == Some(b'\n') {
                        out.extend_from_slice(b"\r\n");
                        self.i += 2;
                    } else {
                        out.push(b'\r');
                        self.i += 1;
                    }
                }
                b'\n' => {
                    out.push(b'\n');
                    self.i += 1;
                }
                b'(' => {
                    if depth == 0 {
                        return false;
                    }
                    out.push(b'(');
                    if !self.inner_literal(out, depth - 1) {
                        return false;
                    }
                    out.push(b')');
                }
                _ => {
                    let run = self.s[self.i..]
                        .iter()
                        .position(|&c| matches!(c, b'(' | b')' | b'\\' | b'\r' | b'\n'))
                        .unwrap_or(self.s.len() - self.i);
                    out.extend_from_slice(&self.s[self.i..self.i + run]);
                    self.i += run;
                }
            }
        }
    }

    /// lopdf `hexadecimal_string`, at `<` (not `<<`).
    fn hex_string(&mut self) -> Option<Object> {
        let start = self.i;
        self.i += 1;
        let mut out = self.bufs.pop().unwrap_or_default();
        let mut high = true;
        loop {
            while let Some(c) = self.peek() {
                if is_whitespace(c) {
                    self.i += 1;
                } else {
                    break;
                }
            }
            match self.peek().and_then(hex) {
                Some(d) => {
                    if high {
                        out.push(d << 4);
                    } else {
                        *out.last_mut().unwrap() |= d;
                    }
                    high = !high;
                    self.i += 1;
                }
                None => break,
            }
        }
        if self.peek() == Some(b'>') {
            self.i += 1;
            Some(Object::String(out, StringFormat::Hexadecimal))
        } else {
            self.i = start;
            self.give_back(out);
            None
        }
    }

    /// lopdf `reference` inside arrays and dictionaries: `u32 space u16 space R`.
    fn reference(&mut self) -> Option<Object> {
        let start = self.i;
        let a = self.digits();
        if a == 0 {
            return None;
        }
        let id = std::str::from_utf8(&self.s[start..self.i]).ok()?.parse::<u32>();
        self.space();
        let gen_start = self.i;
        let b = self.digits();
        let gen = std::str::from_utf8(&self.s[gen_start..self.i]).ok().and_then(|t| t.parse::<u16>().ok());
        if b > 0 {
            self.space();
            if let (Ok(id), Some(gen), Some(b'R')) = (id, gen, self.peek()) {
                self.i += 1;
                return Some(Object::Reference((id, gen)));
            }
        }
        self.i = start;
        None
    }

    /// lopdf `operand` (`in_container` false: ended by `content_space`) and `_direct_object`
    /// (true: a reference allowed, ended by `space`), without the trailing space.
    fn object(&mut self, depth: usize, in_container: bool) -> Option<Object> {
        if depth == 0 {
            return None;
        }
        let c = self.peek()?;
        match c {
            b'n' if self.starts_with(b"null") => {
                self.i += 4;
                Some(Object::Null)
            }
            b't' if self.starts_with(b"true") => {
                self.i += 4;
                Some(Object::Boolean(true))
            }
            b'f' if self.starts_with(b"false") => {
                self.i += 5;
                Some(Object::Boolean(false))
            }
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if in_container && c.is_ascii_digit() {
                    if let Some(r) = self.reference() {
                        return Some(r);
                    }
                }
                self.number()
            }
            b'/' => self.name().map(Object::Name),
            b'(' => self.literal_string(MAX_DEPTH).map(|s| Object::String(s, StringFormat::Literal)),
            b'<' => {
                if self.at(1) == Some(b'<') {
                    self.dictionary(depth).map(Object::Dictionary)
                } else {
                    self.hex_string()
                }
            }
            b'[' => self.array(depth),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<Object> {
        let start = self.i;
        self.i += 1;
        self.space();
        let mut items = self.arrays.pop().unwrap_or_default();
        while let Some(o) = self.object(depth - 1, true) {
            items.push(o);
            self.space();
        }
        if self.peek() == Some(b']') {
            self.i += 1;
            Some(Object::Array(items))
        } else {
            self.i = start;
            self.recycle(Object::Array(items));
            None
        }
    }

    fn dictionary(&mut self, depth: usize) -> Option<Dictionary> {
        let start = self.i;
        self.i += 2;
        self.space();
        let mut dict = Dictionary::new();
        loop {
            let entry = self.i;
            let Some(key) = self.name() else { break };
            self.space();
            match self.object(depth - 1, true) {
                Some(value) => {
                    self.space();
                    dict.set(key, value);
                }
                None => {
                    self.i = entry;
                    break;
                }
            }
        }
        if self.starts_with(b">>") {
            self.i += 2;
            Some(dict)
        } else {
            self.i = start;
            None
        }
    }
}

/// What [`Reader::next`] read.
pub(crate) enum Step {
    /// An operation, in the buffer given.
    Op,
    /// The end of the stream, every byte read.
    End,
    /// A place this reader does not read (at this offset): lopdf's first operations are the
    /// ones read so far, and lopdf is asked for the rest.
    Stop(usize),
}

impl<'a> Reader<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Reader<'a> {
        let mut r = Reader { s, i: 0, bufs: Vec::new(), arrays: Vec::new() };
        r.content_space();
        r
    }

    fn give_back(&mut self, mut buf: Vec<u8>) {
        if self.bufs.len() < POOL {
            buf.clear();
            self.bufs.push(buf);
        }
    }

    /// An operand done with: its buffers are kept for the next ones.
    fn recycle(&mut self, o: Object) {
        match o {
            Object::String(buf, _) | Object::Name(buf) => self.give_back(buf),
            Object::Array(mut items) => {
                for item in items.drain(..) {
                    self.recycle(item);
                }
                if self.arrays.len() < POOL {
                    self.arrays.push(items);
                }
            }
            _ => {}
        }
    }

    /// The next operation into `op`, its buffers reused (an operator or a number costs no
    /// allocation).
    pub(crate) fn next(&mut self, op: &mut Operation) -> Step {
        let start = self.i;
        while self.peek() == Some(b'%') {
            if !self.comment() {
                break;
            }
        }
        if self.starts_with(b"BI") {
            // An inline image: lopdf reads its data by its dictionary, and may give up on the
            // whole stream.
            return Step::Stop(self.i);
        }
        for o in op.operands.drain(..) {
            self.recycle(o);
        }
        while let Some(o) = self.object(MAX_DEPTH, false) {
            op.operands.push(o);
            self.content_space();
        }
        if self.operator_into(&mut op.operator) {
            self.content_space();
            return Step::Op;
        }
        self.i = start;
        while self.comment() {
            self.content_space();
        }
        if self.i == self.s.len() { Step::End } else { Step::Stop(self.i) }
    }

    /// lopdf `operator`: letters, `*`, `'` and `"`.
    fn operator_into(&mut self, out: &mut String) -> bool {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphabetic() || matches!(c, b'*' | b'\'' | b'"') {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == start {
            return false;
        }
        out.clear();
        // ASCII only: a char per byte.
        out.extend(self.s[start..self.i].iter().map(|&c| c as char));
        true
    }
}

/// Every operation of a content stream (for checking against lopdf), and where reading
/// stopped if it did not reach the end.
pub(crate) fn decode(s: &[u8]) -> (Vec<Operation>, Option<usize>) {
    let mut r = Reader::new(s);
    let mut ops = Vec::new();
    let mut op = Operation { operator: String::new(), operands: Vec::new() };
    loop {
        match r.next(&mut op) {
            Step::Op => ops.push(op.clone()),
            Step::End => return (ops, None),
            Step::Stop(at) => return (ops, Some(at)),
        }
    }
}
