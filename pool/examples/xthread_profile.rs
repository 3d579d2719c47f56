//! A driver for callgrind: objects taken on one thread, released on another.
//!
//! `valgrind --tool=callgrind target/release/examples/xthread_profile` and read
//! the inclusive cost of `take_chunk` (thread A) and `release_chunk`
//! (thread B), divided by the objects moved (printed at the end). Also runs
//! one same-thread get+put loop (`get_put_same_thread`).

use corral_pool::{pool, PoolConfig};
use std::hint::black_box;
use std::sync::mpsc;

type Obj = Box<[u8; 128]>;

pool! { static POOL: Pool<Obj> = PoolConfig::DEFAULT; }

const CHUNK: usize = 256;
const CHUNKS: usize = 4000;

#[inline(never)]
fn take_chunk(chunk: &mut Vec<Obj>) {
    for _ in 0..CHUNK {
        chunk.push(POOL.get_or_create(|| Box::new([0; 128])));
    }
}

#[inline(never)]
fn release_chunk(chunk: &mut Vec<Obj>) {
    for obj in chunk.drain(..) {
        POOL.put(obj);
    }
}

#[inline(never)]
fn get_put_same_thread(n: usize) {
    for _ in 0..n {
        let mut obj = POOL.get_or_create(|| Box::new([0; 128]));
        obj[0] = black_box(1);
        POOL.put(black_box(obj));
    }
}

fn main() {
    let (to_b, from_a) = mpsc::sync_channel::<Vec<Obj>>(2);
    let (to_a, from_b) = mpsc::sync_channel::<Vec<Obj>>(2);
    to_a.send(Vec::with_capacity(CHUNK)).unwrap();
    to_a.send(Vec::with_capacity(CHUNK)).unwrap();
    let b = std::thread::spawn(move || {
        while let Ok(mut chunk) = from_a.recv() {
            release_chunk(&mut chunk);
            let _ = to_a.send(chunk);
        }
    });
    for _ in 0..CHUNKS {
        let mut chunk = from_b.recv().unwrap();
        take_chunk(&mut chunk);
        to_b.send(chunk).unwrap();
    }
    drop(to_b);
    b.join().unwrap();
    get_put_same_thread(CHUNK * CHUNKS);
    println!("objects per side: {}", CHUNK * CHUNKS);
    println!("{:?}", POOL.stats());
}
