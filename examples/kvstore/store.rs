//! A small log-structured key-value store on corral's coroutine I/O.
//!
//! Every `put` appends one record to the end of a log file and updates an in-memory
//! index (key -> where its latest value lies); `get` reads the value back with one
//! positioned read. Each client request is a coroutine doing `co_pwritev`/`co_pread`, so
//! many requests are in flight on one thread, batched by the backend.
//!
//! Record layout: `[key_len: u32 LE][value_len: u32 LE][key][value]`. Space in the log is
//! reserved before the write, so concurrent puts never overlap; the index only moves
//! forward (a slower, older put cannot hide a newer one). `open` replays the log.

use corral::aio::block::{BlockDevice, OpenOptions};
use corral::aio::AioContext;
use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const HEADER: usize = 8;

/// Where a key's latest value lies in the log.
#[derive(Debug, Clone, Copy)]
struct Location {
    record: u64,
    value_offset: u64,
    value_len: u32,
}

/// The store: shared by the client coroutines of one `AioContext`.
#[derive(Debug, Clone)]
pub(crate) struct KvStore {
    dev: BlockDevice,
    tail: Arc<AtomicU64>,
    index: Arc<Mutex<HashMap<Vec<u8>, Location>>>,
}

impl KvStore {
    /// Opens (or creates) the log at `path`; call [`recover`](Self::recover) in a coroutine
    /// before serving requests when the log may hold data.
    pub(crate) fn open(
        ctx: &Arc<AioContext>,
        path: &Path,
        opts: &OpenOptions,
    ) -> io::Result<KvStore> {
        let opts = OpenOptions {
            write: true,
            create: true,
            ..opts.clone()
        };
        let dev = BlockDevice::open(ctx, path, &opts)?;
        let tail = Arc::new(AtomicU64::new(dev.size()?));
        Ok(KvStore {
            dev,
            tail,
            index: Arc::default(),
        })
    }

    /// Rebuilds the index by reading the log from the start (coroutine face).
    pub(crate) fn recover(&self) -> io::Result<usize> {
        let end = self.tail.load(Ordering::Acquire);
        let (mut pos, mut records) = (0u64, 0);
        while pos + HEADER as u64 <= end {
            let mut header = [0u8; HEADER];
            self.read_exact(pos, &mut header)?;
            let key_len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
            let value_len = u32::from_le_bytes(header[4..].try_into().unwrap());
            let mut key = vec![0u8; key_len];
            self.read_exact(pos + HEADER as u64, &mut key)?;
            let value_offset = pos + (HEADER + key_len) as u64;
            self.index.lock().unwrap().insert(
                key,
                Location {
                    record: pos,
                    value_offset,
                    value_len,
                },
            );
            pos = value_offset + value_len as u64;
            records += 1;
        }
        Ok(records)
    }

    /// Stores `value` under `key` (coroutine face: call from a coroutine of the context).
    pub(crate) fn put(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let header = [
            (key.len() as u32).to_le_bytes(),
            (value.len() as u32).to_le_bytes(),
        ]
        .concat();
        let len = (HEADER + key.len() + value.len()) as u64;
        let record = self.tail.fetch_add(len, Ordering::AcqRel);
        let bufs = [
            IoSlice::new(&header),
            IoSlice::new(key),
            IoSlice::new(value),
        ];
        let written = self.dev.co_pwritev(record, &bufs)?;
        if written as u64 != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the log",
            ));
        }
        let location = Location {
            record,
            value_offset: record + (HEADER + key.len()) as u64,
            value_len: value.len() as u32,
        };
        let mut index = self.index.lock().unwrap();
        match index.get(key) {
            Some(newer) if newer.record > record => {}
            _ => {
                index.insert(key.to_vec(), location);
            }
        }
        Ok(())
    }

    /// The latest value of `key`, if any.
    pub(crate) fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let Some(location) = self.index.lock().unwrap().get(key).copied() else {
            return Ok(None);
        };
        let mut value = vec![0u8; location.value_len as usize];
        self.read_exact(location.value_offset, &mut value)?;
        Ok(Some(value))
    }

    /// Makes every completed put durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.dev.co_flush()
    }

    /// Waits (outside coroutines) until no request of the store is in flight.
    pub(crate) fn drain(&self) -> io::Result<()> {
        self.dev.drain()
    }

    fn read_exact(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let n = self.dev.co_pread(offset, buf)?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "log ends inside a record",
            ));
        }
        Ok(())
    }
}

/// Runs `clients` coroutines against a store at `path`, each putting `keys` keys then
/// reading them all back; then reopens the log and checks the replayed index.
/// Returns the number of requests served.
pub(crate) fn workload(
    path: &Path,
    opts: &OpenOptions,
    clients: usize,
    keys: usize,
) -> io::Result<usize> {
    let ctx = AioContext::new()?;
    let store = KvStore::open(&ctx, path, opts)?;
    let finished = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    for client in 0..clients {
        let (store, finished, failures) = (store.clone(), finished.clone(), failures.clone());
        let co = corral::runtime::Coroutine::new(move || {
            let run = || -> io::Result<()> {
                for k in 0..keys {
                    store.put(
                        format!("c{client}-k{k}").as_bytes(),
                        format!("value {k} of client {client}").as_bytes(),
                    )?;
                }
                for k in 0..keys {
                    let got = store.get(format!("c{client}-k{k}").as_bytes())?;
                    if got.as_deref() != Some(format!("value {k} of client {client}").as_bytes()) {
                        return Err(io::Error::other(format!(
                            "client {client} key {k}: wrong value {got:?}"
                        )));
                    }
                }
                store.sync()
            };
            if let Err(err) = run() {
                failures.lock().unwrap().push(err.to_string());
            }
            finished.fetch_add(1, Ordering::Release);
        });
        ctx.co_enter(co);
    }
    while finished.load(Ordering::Acquire) < clients as u64 {
        ctx.poll(true);
    }
    store.drain()?;
    if let Some(err) = failures.lock().unwrap().first() {
        return Err(io::Error::other(err.clone()));
    }
    drop(store);
    // Reopen: replaying the log must find every key.
    let reopened = KvStore::open(&ctx, path, opts)?;
    let (r, done) = (reopened.clone(), Arc::new(Mutex::new(None)));
    let d = done.clone();
    ctx.co_enter(corral::runtime::Coroutine::new(move || {
        *d.lock().unwrap() = Some(r.recover())
    }));
    let records = loop {
        if let Some(res) = done.lock().unwrap().take() {
            break res?;
        }
        ctx.poll(true);
    };
    if records != clients * keys || reopened.index.lock().unwrap().len() != clients * keys {
        return Err(io::Error::other(format!(
            "replayed {records} records, expected {}",
            clients * keys
        )));
    }
    Ok(clients * keys * 2)
}
