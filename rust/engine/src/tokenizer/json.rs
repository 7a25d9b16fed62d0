//! A small JSON reader for the tokenizer fixtures (the engine has no JSON
//! dependency). It accepts standard JSON; numbers are kept as f64.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(map) => map.get(key).unwrap_or_else(|| panic!("fixture has no key {key:?}")),
            other => panic!("expected an object with {key:?}, found {other:?}"),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Json::String(s) => s,
            other => panic!("expected a string, found {other:?}"),
        }
    }

    pub fn as_bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("expected a bool, found {other:?}"),
        }
    }

    pub fn as_i64(&self) -> i64 {
        match self {
            Json::Number(n) => *n as i64,
            other => panic!("expected a number, found {other:?}"),
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            other => panic!("expected an array, found {other:?}"),
        }
    }

    pub fn as_object(&self) -> &BTreeMap<String, Json> {
        match self {
            Json::Object(map) => map,
            other => panic!("expected an object, found {other:?}"),
        }
    }
}

pub fn parse(text: &str) -> Result<Json, String> {
    let mut parser = Parser { chars: text.chars().collect(), pos: 0 };
    let value = parser.value()?;
    parser.skip_ws();
    if parser.pos != parser.chars.len() {
        return Err(format!("trailing characters at {}", parser.pos));
    }
    Ok(value)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or("unexpected end of JSON")?;
        self.pos += 1;
        Ok(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    fn expect_word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        for expected in word.chars() {
            if self.next()? != expected {
                return Err(format!("invalid literal at {}", self.pos));
            }
        }
        Ok(value)
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_ws();
        match self.peek().ok_or("unexpected end of JSON")? {
            '{' => self.object(),
            '[' => self.array(),
            '"' => Ok(Json::String(self.string()?)),
            't' => self.expect_word("true", Json::Bool(true)),
            'f' => self.expect_word("false", Json::Bool(false)),
            'n' => self.expect_word("null", Json::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.pos += 1;
        let mut map = BTreeMap::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.pos += 1;
            return Ok(Json::Object(map));
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            if self.next()? != ':' {
                return Err(format!("expected ':' at {}", self.pos));
            }
            let value = self.value()?;
            map.insert(key, value);
            self.skip_ws();
            match self.next()? {
                ',' => continue,
                '}' => return Ok(Json::Object(map)),
                c => return Err(format!("expected ',' or '}}', found {c:?} at {}", self.pos)),
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.next()? {
                ',' => continue,
                ']' => return Ok(Json::Array(items)),
                c => return Err(format!("expected ',' or ']', found {c:?} at {}", self.pos)),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = self.next()?.to_digit(16).ok_or("invalid \\u escape")?;
            value = value * 16 + digit;
        }
        Ok(value)
    }

    fn string(&mut self) -> Result<String, String> {
        if self.next()? != '"' {
            return Err(format!("expected a string at {}", self.pos));
        }
        let mut out = String::new();
        loop {
            match self.next()? {
                '"' => return Ok(out),
                '\\' => match self.next()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{08}'),
                    'f' => out.push('\u{0C}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let mut cpt = self.hex4()?;
                        if (0xD800..0xDC00).contains(&cpt) {
                            if self.next()? != '\\' || self.next()? != 'u' {
                                return Err("unpaired surrogate".into());
                            }
                            let low = self.hex4()?;
                            cpt = 0x10000 + ((cpt - 0xD800) << 10) + (low - 0xDC00);
                        }
                        out.push(char::from_u32(cpt).ok_or("invalid code point")?);
                    }
                    c => return Err(format!("invalid escape \\{c}")),
                },
                c => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.pos;
        while matches!(self.peek(), Some('-' | '+' | '.' | 'e' | 'E' | '0'..='9')) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse().map(Json::Number).map_err(|_| format!("invalid number {text:?} at {start}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_values() {
        let value = parse(r#"{"a": [1, -2.5, true, null], "b": "x\u00e9\ud83d\ude00\n"}"#).unwrap();
        assert_eq!(value.get("a").as_array().len(), 4);
        assert_eq!(value.get("a").as_array()[1], Json::Number(-2.5));
        assert_eq!(value.get("b").as_str(), "xé😀\n");
    }

    #[test]
    fn rejects_trailing_text() {
        assert!(parse("[1] 2").is_err());
    }
}
