//! COPY helpers: raw binary fields out (no per-type conversions on the hot
//! path) and text-format rows in.

use anyhow::Result;
use bytes::Bytes;
use futures_util::SinkExt;
use postgres_types::{FromSql, Type};
use tokio_postgres::CopyInSink;

use crate::db::PgResultExt;

/// Any column's raw binary value; `None` for NULL.
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A binary `text` value (UTF-8 by protocol).
pub fn text(raw: &[u8]) -> &str {
    std::str::from_utf8(raw).unwrap_or("")
}

/// A binary `timestamptz`: microseconds since 2000-01-01.
pub fn timestamp(raw: Option<&[u8]>) -> i64 {
    raw.and_then(|r| r.try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0)
}

/// A binary `uuid` as a number with the same order as the uuid.
pub fn uuid(raw: Option<&[u8]>) -> u128 {
    raw.and_then(|r| r.try_into().ok())
        .map(u128::from_be_bytes)
        .unwrap_or(0)
}

/// Elements of a one-dimensional binary `text[]` (NULL elements as `None`).
pub fn text_array(raw: &[u8]) -> Vec<Option<&str>> {
    let rd = |at: usize| -> Option<i32> {
        raw.get(at..at + 4)
            .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
    };
    let mut out = Vec::new();
    let Some(ndim) = rd(0) else { return out };
    if ndim == 0 {
        return out;
    }
    let n = rd(12).unwrap_or(0).max(0) as usize;
    let mut at = 12 + 8 * ndim as usize;
    for _ in 0..n {
        let Some(len) = rd(at) else { break };
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            let len = len as usize;
            out.push(raw.get(at..at + len).map(text));
            at += len;
        }
    }
    out
}

/// Rows into a COPY ... FROM STDIN (text format), sent in 1 MiB chunks.
pub struct TextCopy {
    sink: std::pin::Pin<Box<CopyInSink<Bytes>>>,
    buf: String,
    what: String,
}

impl TextCopy {
    pub fn new(sink: CopyInSink<Bytes>, what: &str) -> TextCopy {
        TextCopy {
            sink: Box::pin(sink),
            buf: String::with_capacity(1 << 20),
            what: what.to_string(),
        }
    }

    pub async fn row(&mut self, fields: &[Option<&str>]) -> Result<()> {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.buf.push('\t');
            }
            match f {
                Some(s) => crate::demo::generate::copy_escape(&mut self.buf, s),
                None => self.buf.push_str("\\N"),
            }
        }
        self.buf.push('\n');
        if self.buf.len() > (1 << 20) {
            let chunk = std::mem::replace(&mut self.buf, String::with_capacity(1 << 20));
            self.sink
                .send(Bytes::from(chunk))
                .await
                .pg_context(|| format!("COPY into {}", self.what))?;
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<u64> {
        let chunk = std::mem::take(&mut self.buf);
        if !chunk.is_empty() {
            self.sink
                .send(Bytes::from(chunk))
                .await
                .pg_context(|| format!("COPY into {}", self.what))?;
        }
        let what = self.what.clone();
        self.sink
            .as_mut()
            .finish()
            .await
            .pg_context(|| format!("finishing COPY into {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_text_arrays() {
        let mut raw = Vec::new();
        for v in [1i32, 1, 25, 2, 1] {
            raw.extend(v.to_be_bytes());
        }
        raw.extend(2i32.to_be_bytes());
        raw.extend(b"ab");
        raw.extend((-1i32).to_be_bytes());
        assert_eq!(text_array(&raw), [Some("ab"), None]);
        let mut empty = Vec::new();
        for v in [0i32, 0, 25] {
            empty.extend(v.to_be_bytes());
        }
        assert!(text_array(&empty).is_empty());
    }
}
