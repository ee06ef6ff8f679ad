//! PostgreSQL binary COPY: a streaming reader of `COPY ... TO STDOUT (FORMAT
//! binary)` and a writer for `COPY ... FROM STDIN (FORMAT binary)`, without a
//! per-row allocation.

use anyhow::{bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::{Client, CopyInSink};

use crate::db::PgResultExt;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Field `i` of a tuple: `None` for NULL.
pub struct Tuple<'a> {
    data: &'a [u8],
    fields: &'a [(u32, i32)],
}

impl<'a> Tuple<'a> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let (off, len) = self.fields[i];
        if len < 0 {
            None
        } else {
            Some(&self.data[off as usize..off as usize + len as usize])
        }
    }

    pub fn uuid(&self, i: usize) -> Result<[u8; 16]> {
        match self.get(i) {
            Some(b) if b.len() == 16 => Ok(b.try_into().unwrap()),
            _ => bail!("COPY: field {i} is not a uuid"),
        }
    }

    pub fn i64(&self, i: usize) -> Option<i64> {
        self.get(i)
            .filter(|b| b.len() == 8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap()))
    }

    pub fn i16(&self, i: usize) -> Option<i16> {
        self.get(i)
            .filter(|b| b.len() == 2)
            .map(|b| i16::from_be_bytes(b.try_into().unwrap()))
    }
}

/// Field `i` of a row in its binary form: `None` for NULL.
pub fn field(row: &tokio_postgres::Row, i: usize) -> Option<&[u8]> {
    row.get::<_, crate::attrs::copy::Raw>(i).0
}

/// A `uuid` field of a row.
pub fn uuid_field(row: &tokio_postgres::Row, i: usize) -> Result<[u8; 16]> {
    match field(row, i) {
        Some(b) if b.len() == 16 => Ok(b.try_into().unwrap()),
        _ => bail!("field {i} is not a uuid"),
    }
}

/// An `int2` field of a row.
pub fn i16_field(row: &tokio_postgres::Row, i: usize) -> Option<i16> {
    field(row, i)
        .filter(|b| b.len() == 2)
        .map(|b| i16::from_be_bytes(b.try_into().unwrap()))
}

/// Calls `f` with each element of a one-dimensional binary array (`None` for
/// NULL elements), with its position.
pub fn array_elements<'a>(
    raw: &'a [u8],
    mut f: impl FnMut(usize, Option<&'a [u8]>) -> Result<()>,
) -> Result<()> {
    let rd = |o: usize| -> Result<i32> {
        raw.get(o..o + 4)
            .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
            .ok_or_else(|| anyhow::anyhow!("COPY: truncated array"))
    };
    let ndim = rd(0)?;
    if ndim == 0 {
        return Ok(());
    }
    if ndim != 1 {
        bail!("COPY: expected a one-dimensional array, got {ndim} dimensions");
    }
    let n = rd(12)? as usize;
    let mut o = 20;
    for k in 0..n {
        let len = rd(o)?;
        o += 4;
        if len < 0 {
            f(k, None)?;
        } else {
            let end = o + len as usize;
            if end > raw.len() {
                bail!("COPY: truncated array element");
            }
            f(k, Some(&raw[o..end]))?;
            o = end;
        }
    }
    Ok(())
}

/// Streams `COPY (<query>) TO STDOUT (FORMAT binary)`, calling `on_row` per tuple.
/// Returns the number of tuples.
pub async fn copy_out(
    client: &Client,
    query: &str,
    what: &str,
    mut on_row: impl FnMut(&Tuple) -> Result<()>,
) -> Result<u64> {
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
        .await
        .pg_context(|| what.to_string())?;
    futures_util::pin_mut!(stream);
    let mut buf = BytesMut::new();
    let mut pos = 0usize;
    let mut header_done = false;
    let mut fields: Vec<(u32, i32)> = Vec::new();
    let mut rows = 0u64;
    let mut ended = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.pg_context(|| what.to_string())?;
        if pos > 0 && pos == buf.len() {
            buf.clear();
            pos = 0;
        } else if pos > (1 << 20) {
            let _ = buf.split_to(pos);
            pos = 0;
        }
        buf.extend_from_slice(&chunk);
        if !header_done {
            if buf.len() < 19 {
                continue;
            }
            if &buf[..11] != SIGNATURE {
                bail!("{what}: not a binary COPY stream");
            }
            let ext = i32::from_be_bytes(buf[15..19].try_into().unwrap()) as usize;
            if buf.len() < 19 + ext {
                continue;
            }
            pos = 19 + ext;
            header_done = true;
        }
        // parse every complete tuple in buf[pos..]
        loop {
            let data = &buf[..];
            if data.len() < pos + 2 {
                break;
            }
            let nf = i16::from_be_bytes(data[pos..pos + 2].try_into().unwrap());
            if nf < 0 {
                ended = true;
                pos += 2;
                break;
            }
            let mut o = pos + 2;
            fields.clear();
            let mut complete = true;
            for _ in 0..nf {
                if data.len() < o + 4 {
                    complete = false;
                    break;
                }
                let len = i32::from_be_bytes(data[o..o + 4].try_into().unwrap());
                o += 4;
                if len >= 0 {
                    if data.len() < o + len as usize {
                        complete = false;
                        break;
                    }
                    fields.push((o as u32, len));
                    o += len as usize;
                } else {
                    fields.push((0, -1));
                }
            }
            if !complete {
                break;
            }
            on_row(&Tuple {
                data,
                fields: &fields,
            })?;
            rows += 1;
            pos = o;
        }
        if ended {
            break;
        }
    }
    // drain the end of the stream
    while let Some(chunk) = stream.next().await {
        chunk.pg_context(|| what.to_string())?;
    }
    Ok(rows)
}

/// Writes rows for `COPY <table> FROM STDIN (FORMAT binary)` in 1 MiB chunks.
pub struct CopyWriter {
    sink: std::pin::Pin<Box<CopyInSink<Bytes>>>,
    buf: BytesMut,
    what: String,
    pub rows: u64,
}

impl CopyWriter {
    /// Starts `COPY <target> FROM STDIN (FORMAT binary)`; `target` is the
    /// table with its column list.
    pub async fn start(client: &Client, target: &str, what: &str) -> Result<CopyWriter> {
        Self::start_with(client, target, what, "FORMAT binary").await
    }

    /// Like [`CopyWriter::start`] with `FREEZE`: rows are written already
    /// frozen, for a table truncated earlier in the same transaction.
    pub async fn start_frozen(client: &Client, target: &str, what: &str) -> Result<CopyWriter> {
        Self::start_with(client, target, what, "FORMAT binary, FREEZE").await
    }

    async fn start_with(
        client: &Client,
        target: &str,
        what: &str,
        options: &str,
    ) -> Result<CopyWriter> {
        let sink = client
            .copy_in(&format!("COPY {target} FROM STDIN ({options})"))
            .await
            .pg_context(|| format!("starting COPY into {what}"))?;
        let mut buf = BytesMut::with_capacity(1 << 20);
        buf.put_slice(SIGNATURE);
        buf.put_i32(0);
        buf.put_i32(0);
        Ok(CopyWriter {
            sink: Box::pin(sink),
            buf,
            what: what.to_string(),
            rows: 0,
        })
    }

    /// Begins a row of `n` fields; flushes when the buffer is full.
    pub async fn row(&mut self, n: i16) -> Result<()> {
        if self.buf.len() >= (1 << 20) {
            let chunk = self.buf.split().freeze();
            self.sink
                .send(chunk)
                .await
                .pg_context(|| format!("COPY into {}", self.what))?;
        }
        self.buf.put_i16(n);
        self.rows += 1;
        Ok(())
    }

    pub fn uuid(&mut self, v: &[u8; 16]) {
        self.buf.put_i32(16);
        self.buf.put_slice(v);
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.put_i32(1);
        self.buf.put_u8(v as u8);
    }

    pub fn text(&mut self, v: &[u8]) {
        self.buf.put_i32(v.len() as i32);
        self.buf.put_slice(v);
    }

    pub fn null(&mut self) {
        self.buf.put_i32(-1);
    }

    /// A `text[]` value.
    pub fn text_array<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        let n = items.len();
        let len_pos = self.buf.len();
        self.buf.put_i32(0);
        if n == 0 {
            self.buf.put_i32(0); // ndim
            self.buf.put_i32(0); // flags
            self.buf.put_u32(25); // text
        } else {
            self.buf.put_i32(1);
            self.buf.put_i32(0);
            self.buf.put_u32(25);
            self.buf.put_i32(n as i32);
            self.buf.put_i32(1);
            for it in items {
                self.buf.put_i32(it.len() as i32);
                self.buf.put_slice(it);
            }
        }
        let len = (self.buf.len() - len_pos - 4) as i32;
        self.buf[len_pos..len_pos + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Sends the trailer and finishes the COPY; returns the rows written.
    pub async fn finish(mut self) -> Result<u64> {
        self.buf.put_i16(-1);
        let chunk = self.buf.split().freeze();
        self.sink
            .send(chunk)
            .await
            .pg_context(|| format!("COPY into {}", self.what))?;
        self.sink
            .as_mut()
            .finish()
            .await
            .pg_context(|| format!("finishing COPY into {}", self.what))
    }
}

/// A random (version 4) UUID.
pub fn new_uuid() -> [u8; 16] {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// Formats a UUID as text.
pub fn uuid_string(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_string(&new_uuid());
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn array_elements_parse_nulls() {
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_i32(1);
        b.put_u32(25);
        b.put_i32(3);
        b.put_i32(1);
        b.put_i32(2);
        b.put_slice(b"ab");
        b.put_i32(-1);
        b.put_i32(0);
        let mut got = Vec::new();
        array_elements(&b, |k, v| {
            got.push((k, v.map(|x| x.to_vec())));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![(0, Some(b"ab".to_vec())), (1, None), (2, Some(vec![]))]
        );
    }
}
