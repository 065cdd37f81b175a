//! Reads the `data:` payloads of a server-sent event stream as its bytes arrive in arbitrary
//! pieces. OpenAI-compatible servers send one `data:` line per event; comments (`:` lines),
//! `event:` and `id:` lines carry nothing the gateway needs.

/// Splits a byte stream into `data:` payloads.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    pending: Vec<u8>,
}

impl SseDecoder {
    /// Feeds the next piece of the stream and calls `on_data` with each complete `data:`
    /// payload in it, in order. A line split across pieces is kept until its end arrives.
    pub(crate) fn feed(&mut self, piece: &[u8], mut on_data: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(piece);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                on_data(data.strip_prefix(b" ").unwrap_or(data));
            }
            start += end + 1;
        }
        self.pending.drain(..start);
    }

    /// Whether bytes of an unfinished line are waiting.
    pub(crate) fn has_partial_line(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(pieces: &[&[u8]]) -> Vec<String> {
        let mut decoder = SseDecoder::default();
        let mut found = Vec::new();
        for piece in pieces {
            decoder.feed(piece, |data| {
                found.push(String::from_utf8_lossy(data).into_owned())
            });
        }
        found
    }

    #[test]
    fn payloads_split_anywhere_come_out_whole() {
        let stream =
            b": keep-alive\n\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:{\"b\":2}\n\ndata: [DONE]\n\n";
        let whole = payloads(&[stream]);
        assert_eq!(whole, ["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
        for split in 1..stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(payloads(&[head, tail]), whole, "split at {split}");
        }
    }

    #[test]
    fn an_unfinished_line_is_reported() {
        let mut decoder = SseDecoder::default();
        decoder.feed(b"data: {\"a\"", |_| {});
        assert!(decoder.has_partial_line());
        decoder.feed(b":1}\n", |_| {});
        assert!(!decoder.has_partial_line());
    }
}
