//! A read-only xenstore client over the store ring (public/io/xs_wire.h).

use core::fmt;

use super::abi::{
    XenstoreDomainInterface, XsdSockmsg, PAGE_SHIFT, XENSTORE_PAYLOAD_MAX as PAYLOAD_MAX,
    XENSTORE_RING_SIZE, XS_ERROR, XS_READ, XS_WATCH_EVENT,
};
use super::event_peer::EventPeer;
use super::ring::Ring;
use super::slots::{self, Slot};
use super::XenError;

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
        let page = slots::map(Slot::Store, mfn << PAGE_SHIFT)
            .map_err(StoreError::Map)?
            .cast::<XenstoreDomainInterface>();
        // SAFETY: `page` is the mapped 4 KiB store page, page-aligned, which holds one
        // `XenstoreDomainInterface` and stays mapped in its slot for the life of the domain;
        // only xenstored and these rings write it. The pointers only name its fields (nothing is
        // read here), and the 4-byte indices are aligned by the struct's layout.
        let (req, rsp) = unsafe {
            (
                Ring::new(
                    (&raw mut (*page).req).cast(),
                    XENSTORE_RING_SIZE as u32,
                    &raw mut (*page).req_cons,
                    &raw mut (*page).req_prod,
                ),
                Ring::new(
                    (&raw mut (*page).rsp).cast(),
                    XENSTORE_RING_SIZE as u32,
                    &raw mut (*page).rsp_cons,
                    &raw mut (*page).rsp_prod,
                ),
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
        let header =
            XsdSockmsg { kind: XS_READ, req_id: id, tx_id: 0, len: (path.len() + 1) as u32 }
                .to_bytes();
        for part in [&header[..], path.as_bytes(), &[0u8]] {
            if self.req.produce_all(part, &self.peer) != 0 {
                return Err(StoreError::Timeout);
            }
        }
        loop {
            let mut header = [0u8; XsdSockmsg::SIZE];
            if !self.rsp.consume_exact(&mut header, &self.peer) {
                return Err(StoreError::Timeout);
            }
            let XsdSockmsg { kind, req_id: rsp_id, len, .. } = XsdSockmsg::from_bytes(&header);
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
