//! A read-only xenstore client over the store ring (public/io/xs_wire.h).

use core::fmt;

use super::abi::PAGE_SHIFT;
use super::event_peer::EventPeer;
use super::ring::Ring;
use super::slots::{self, Slot};
use super::XenError;

/// struct xenstore_domain_interface: req[1024], rsp[1024], req_cons, req_prod, rsp_cons, rsp_prod.
const RING_SIZE: u32 = 1024;
const REQ_OFFSET: usize = 0;
const RSP_OFFSET: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;

/// xs_wire.h message types used here.
const XS_READ: u32 = 2;
const XS_WATCH_EVENT: u32 = 15;
const XS_ERROR: u32 = 16;
/// xs_wire.h: XENSTORE_PAYLOAD_MAX.
const PAYLOAD_MAX: usize = 4096;

const WAIT_BUDGET: u32 = 200_000;

#[derive(Debug)]
pub enum StoreError {
    /// Mapping the store page failed.
    Map(XenError),
    /// The path does not fit in one request.
    PathTooLong,
    /// xenstored answered with an error string such as "ENOENT".
    Refused([u8; 16], usize),
    /// No (complete) answer within the wait budget.
    Timeout,
    /// An answer that does not follow the protocol.
    Protocol(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Map(e) => write!(f, "mapping the store page: {e}"),
            Self::PathTooLong => write!(f, "path too long"),
            Self::Refused(text, len) => {
                write!(f, "xenstored said {}", core::str::from_utf8(&text[..*len]).unwrap_or("?"))
            }
            Self::Timeout => write!(f, "no answer from xenstored"),
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

pub struct Xenstore {
    req: Ring,
    rsp: Ring,
    peer: EventPeer,
    next_id: u32,
}

impl Xenstore {
    /// Maps the store page (start_info's store_mfn) and binds to its event channel.
    pub fn connect(mfn: u64, port: u32) -> Result<Self, StoreError> {
        let page = slots::map(Slot::Store, mfn << PAGE_SHIFT).map_err(StoreError::Map)?;
        // SAFETY: `page` is the mapped 4 KiB store page; all offsets are inside it and the
        // index fields are 4-byte aligned.
        let (req, rsp) = unsafe {
            (
                Ring {
                    data: page.add(REQ_OFFSET),
                    size: RING_SIZE,
                    cons: page.add(REQ_CONS).cast(),
                    prod: page.add(REQ_PROD).cast(),
                },
                Ring {
                    data: page.add(RSP_OFFSET),
                    size: RING_SIZE,
                    cons: page.add(RSP_CONS).cast(),
                    prod: page.add(RSP_PROD).cast(),
                },
            )
        };
        Ok(Xenstore { req, rsp, peer: EventPeer { port, budget: WAIT_BUDGET }, next_id: 1 })
    }

    /// XS_READ of `path` (relative paths are under /local/domain/<our domid>); the value is
    /// copied into `out` (truncated to fit) and its length returned.
    pub fn read(&mut self, path: &str, out: &mut [u8]) -> Result<usize, StoreError> {
        if path.len() + 1 > PAYLOAD_MAX {
            return Err(StoreError::PathTooLong);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let header = encode_header(XS_READ, id, (path.len() + 1) as u32);
        for part in [&header[..], path.as_bytes(), &[0u8]] {
            if self.req.produce_all(part, &self.peer) != 0 {
                return Err(StoreError::Timeout);
            }
        }
        loop {
            let mut header = [0u8; 16];
            if !self.rsp.consume_exact(&mut header, &self.peer) {
                return Err(StoreError::Timeout);
            }
            let (kind, rsp_id, len) = decode_header(&header);
            if len as usize > PAYLOAD_MAX {
                return Err(StoreError::Protocol("payload longer than XENSTORE_PAYLOAD_MAX"));
            }
            let mut payload = [0u8; PAYLOAD_MAX];
            if !self.rsp.consume_exact(&mut payload[..len as usize], &self.peer) {
                return Err(StoreError::Timeout);
            }
            let payload = &payload[..len as usize];
            if kind == XS_WATCH_EVENT {
                continue; // not ours: we set no watches, but skip any cleanly
            }
            if rsp_id != id {
                return Err(StoreError::Protocol("answer to another request"));
            }
            if kind == XS_ERROR {
                let mut text = [0u8; 16];
                let n = payload.iter().position(|&b| b == 0).unwrap_or(payload.len()).min(16);
                text[..n].copy_from_slice(&payload[..n]);
                return Err(StoreError::Refused(text, n));
            }
            if kind != XS_READ {
                return Err(StoreError::Protocol("unexpected answer type"));
            }
            let n = payload.len().min(out.len());
            out[..n].copy_from_slice(&payload[..n]);
            return Ok(n);
        }
    }
}

/// struct xsd_sockmsg { type, req_id, tx_id, len }, all u32 little-endian.
fn encode_header(kind: u32, id: u32, len: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[4..8].copy_from_slice(&id.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    h
}

fn decode_header(h: &[u8; 16]) -> (u32, u32, u32) {
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (word(0), word(4), word(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = encode_header(XS_READ, 7, 5);
        assert_eq!(decode_header(&h), (2, 7, 5));
        assert_eq!(&h[8..12], &[0; 4], "no transaction");
    }
}
