//! A minimal flow-size load: `flows serve ADDR SIZE` answers every connection with SIZE
//! bytes; `flows get ADDR THREADS SECS` fetches whole flows in a loop and prints flows/s
//! and Gbit/s. Used by `scripts/splice-threshold.sh` to choose the splice threshold.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: flows serve ADDR SIZE | flows get ADDR THREADS SECS";
    match a.get(1).map(String::as_str) {
        Some("serve") if a.len() == 4 => serve(&a[2], a[3].parse().expect(usage)),
        Some("get") if a.len() == 5 => get(
            &a[2],
            a[3].parse().expect(usage),
            a[4].parse().expect(usage),
        ),
        _ => eprintln!("{usage}"),
    }
}

fn serve(addr: &str, size: usize) {
    let l = TcpListener::bind(addr).unwrap();
    for c in l.incoming() {
        let Ok(mut c) = c else { continue };
        std::thread::spawn(move || {
            let buf = vec![7u8; 256 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(buf.len());
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
                left -= n;
            }
        });
    }
}

fn get(target: &str, threads: usize, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let t = target.to_owned();
            std::thread::spawn(move || {
                let (mut flows, mut bytes) = (0u64, 0u64);
                let mut buf = vec![0u8; 256 * 1024];
                while Instant::now() < end {
                    let mut c = TcpStream::connect(&t).unwrap();
                    while let Ok(k @ 1..) = c.read(&mut buf) {
                        bytes += k as u64;
                    }
                    flows += 1;
                }
                (flows, bytes)
            })
        })
        .collect();
    let (mut flows, mut bytes) = (0, 0);
    for h in handles {
        let (f, b) = h.join().unwrap();
        flows += f;
        bytes += b;
    }
    let s = secs as f64;
    println!(
        "{:.0} flows/s {:.2} Gbit/s",
        flows as f64 / s,
        bytes as f64 * 8.0 / 1e9 / s
    );
}
