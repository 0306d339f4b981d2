//! Retries, timeouts and refused connections, against a scripted HTTP server on loopback
//! (nginx cannot be told to fail twice and then succeed).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use packer::transport::{self, TransportOptions};
use packer::{ProgressEvent, TransportError};

use crate::util::*;

enum Reply {
    Status(u16),
    Body(Vec<u8>),
    /// Accept, read the request, never answer (until the client gives up).
    Silence,
    /// Read the request's head and this many bytes of its body, then close.
    CloseAfter(usize),
    /// Read the whole request (head and body) and never answer, until the client hangs up.
    Drain,
}

/// Answers one connection per scripted reply, then stops answering (the port keeps
/// listening while the value lives, so that a later connection is not refused).
struct Scripted {
    port: u16,
    handle: Option<JoinHandle<usize>>,
    _listening: TcpListener,
}

fn read_request(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            return buf;
        }
        buf.push(byte[0]);
    }
    buf
}

/// Reads `n` bytes (fewer if the client hangs up first).
fn read_bytes(s: &mut TcpStream, n: usize) {
    let mut left = n;
    let mut buf = [0u8; 8192];
    while left > 0 {
        match s.read(&mut buf[..left.min(8192)]) {
            Ok(0) | Err(_) => return,
            Ok(k) => left -= k,
        }
    }
}

impl Scripted {
    fn start(replies: Vec<Reply>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let listening = listener.try_clone().unwrap();
        let handle = std::thread::spawn(move || {
            let mut served = 0;
            for reply in replies {
                let (mut s, _) = loop {
                    let (mut s, peer) = listener.accept().unwrap();
                    // A connection that sends nothing is the client checking that the
                    // port is open (after a broken upload): not a request.
                    if !read_request(&mut s).is_empty() {
                        break (s, peer);
                    }
                };
                served += 1;
                match reply {
                    Reply::Status(code) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Reply::Body(b) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        );
                        let _ = s.write_all(&b);
                    }
                    Reply::Silence => {
                        // Hold the connection until the client hangs up (bounded).
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let _ = s.read(&mut [0u8; 1]);
                    }
                    Reply::CloseAfter(n) => {
                        read_bytes(&mut s, n);
                        // Dropping the stream closes the connection.
                    }
                    Reply::Drain => {
                        // Read until the client hangs up (bounded), never answering.
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        read_bytes(&mut s, usize::MAX);
                    }
                }
            }
            served
        });
        Scripted {
            port,
            handle: Some(handle),
            _listening: listening,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    fn served(mut self) -> usize {
        self.handle.take().unwrap().join().unwrap()
    }
}

fn options() -> TransportOptions {
    let mut o = TransportOptions::default();
    o.backoff = Duration::from_millis(10);
    o.max_attempts = 3;
    o
}

#[test]
fn transient_errors_are_retried() {
    let body = noise("retry", 5000);
    let hash = blake3::hash(&body).to_hex().to_string();
    let name = format!("r-{}.chaos.tar.zst", &hash[..32]);
    let server = Scripted::start(vec![
        Reply::Status(503),
        Reply::Status(502),
        Reply::Body(body.clone()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let mut retries = Vec::new();
    let got = transport::download(
        &server.url(&name),
        tmp.path(),
        &options(),
        &mut |e: &ProgressEvent| {
            if let ProgressEvent::Retrying {
                attempt, reason, ..
            } = e
            {
                retries.push((*attempt, reason.clone()));
            }
        },
    )
    .unwrap();
    assert_eq!(got.hash, hash);
    assert_eq!(retries.len(), 2);
    assert!(retries[0].1.contains("503"), "{retries:?}");
    assert_eq!(server.served(), 3);
}

#[test]
fn persistent_5xx_gives_up_with_the_count() {
    let server = Scripted::start(vec![
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(500),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let err = transport::download(
        &server.url("x.chaos.tar.zst"),
        tmp.path(),
        &options(),
        &mut quiet(),
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(server.served(), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let server = Scripted::start(vec![Reply::Status(404)]);
    let tmp = tempfile::tempdir().unwrap();
    let err = transport::download(
        &server.url("x.chaos.tar.zst"),
        tmp.path(),
        &options(),
        &mut quiet(),
    )
    .unwrap_err();
    assert!(matches!(err, TransportError::NotFound { .. }), "{err}");
    assert_eq!(server.served(), 1);
}

/// A port on 127.0.0.1 that refuses connections for as long as the returned socket
/// lives: bound but not listening, so no other test's server can take it meanwhile
/// (a merely "free" port can be reused by a concurrent test between lookup and use).
fn refusing_port() -> (i32, u16) {
    // SAFETY: plain socket calls on locals; the fd is closed by the caller.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        let mut out: libc::sockaddr_in = std::mem::zeroed();
        let mut out_len = len;
        libc::getsockname(fd, &mut out as *mut _ as *mut libc::sockaddr, &mut out_len);
        (fd, u16::from_be(out.sin_port))
    }
}

#[test]
fn refused_connection_is_named() {
    let (fd, port) = refusing_port();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("a.chaos.tar.zst");
    std::fs::write(&src, b"x").unwrap();
    let url = format!("http://127.0.0.1:{port}/a.chaos.tar.zst");
    let err = transport::upload(&src, &url, &options(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionRefused { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("is the server running"), "{err}");
    // SAFETY: the socket from refusing_port.
    unsafe { libc::close(fd) };
}

#[test]
fn silent_server_times_out() {
    let server = Scripted::start(vec![Reply::Silence]);
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.timeout = Duration::from_millis(500);
    opts.max_attempts = 1;
    let err = transport::download(
        &server.url("x.chaos.tar.zst"),
        tmp.path(),
        &opts,
        &mut quiet(),
    )
    .unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("no answer within"), "{err}");
    assert!(
        err.to_string()
            .contains("the limit for this attempt: 0.5 s"),
        "{err}"
    );
    drop(server);
}

/// An archive of `len` bytes to upload.
fn upload_source(dir: &std::path::Path, len: usize) -> std::path::PathBuf {
    let src = dir.join("a.chaos.tar.zst");
    std::fs::write(&src, noise("upload", len)).unwrap();
    src
}

#[test]
fn an_upload_cut_off_halfway_names_the_cause() {
    // The server reads the head and 100 KB of a 4 MiB body, then closes the connection.
    let server = Scripted::start(vec![Reply::CloseAfter(100_000), Reply::CloseAfter(100_000)]);
    let tmp = tempfile::tempdir().unwrap();
    let src = upload_source(tmp.path(), 4 << 20);
    let mut reasons = Vec::new();
    let mut opts = options();
    opts.max_attempts = 2;
    let err = transport::upload(
        &src,
        &server.url("a.chaos.tar.zst"),
        &opts,
        &mut |e: &ProgressEvent| {
            if let ProgressEvent::Retrying { reason, .. } = e {
                reasons.push(reason.clone());
            }
        },
    )
    .unwrap_err();
    assert_eq!(server.served(), 2);
    let TransportError::GaveUp { attempts, last, .. } = &err else {
        panic!("expected GaveUp, got {err:?}");
    };
    assert_eq!(*attempts, 2);
    let TransportError::ConnectionClosed {
        sent, total, cause, ..
    } = last.as_ref()
    else {
        panic!("expected ConnectionClosed, got {last:?}");
    };
    assert_eq!(*total, 4 << 20);
    assert!(*sent < *total, "{err}");
    assert!(!cause.trim().is_empty(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("gave up after 2 attempts")
            && msg.contains("the connection closed before the upload finished")
            && msg.contains(cause.as_str()),
        "{msg}"
    );
    // The retry line says it too, cause included.
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("the connection closed before the upload finished")
            && reasons[0].contains(cause.as_str()),
        "{reasons:?}"
    );
}

#[test]
fn an_upload_without_an_answer_reports_the_limit_of_each_attempt_and_their_number() {
    // The server reads the whole request and never answers.
    let server = Scripted::start(vec![Reply::Drain, Reply::Drain]);
    let tmp = tempfile::tempdir().unwrap();
    let src = upload_source(tmp.path(), 64 << 10);
    let mut opts = options();
    opts.max_attempts = 2;
    opts.timeout = Duration::from_millis(400);
    // An upload may take the timeout plus its size at this speed (whole seconds): 400 ms.
    opts.min_throughput = 64 << 20;
    let err =
        transport::upload(&src, &server.url("a.chaos.tar.zst"), &opts, &mut quiet()).unwrap_err();
    assert_eq!(server.served(), 2);
    let TransportError::GaveUp { attempts, last, .. } = &err else {
        panic!("expected GaveUp, got {err:?}");
    };
    assert_eq!(*attempts, 2);
    let TransportError::Timeout { after, limit, .. } = last.as_ref() else {
        panic!("expected Timeout, got {last:?}");
    };
    assert_eq!(*limit, Duration::from_millis(400));
    assert!(after >= limit, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("gave up after 2 attempts")
            && msg.contains("the limit for this attempt: 0.4 s"),
        "{msg}"
    );
}
