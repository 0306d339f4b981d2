//! Real servers for the transport tests, started on 127.0.0.1 on an ephemeral port and
//! stopped by pid when dropped: nginx (WebDAV PUT/GET) from Debian and the S3-compatible
//! `s3s-fs` from crates.io. Both are installed by `.ci/packer-deps.sh`; a missing binary
//! fails the test with that hint instead of skipping it.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_binary(name: &str, extra: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(extra.iter().map(PathBuf::from));
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed; the packer's transport tests need it \
         (hint: run .ci/packer-deps.sh)"
    );
}

/// Waits until something accepts connections on the port, a bounded number of times
/// (up to 15 s: CI machines are busy). `Err` with the server's log if it exited first,
/// e.g. because another process took the port between `free_port` and its bind.
fn wait_for_port(port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    for _ in 0..600 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "server exited with {status} before listening on {port}: {}",
                fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    stop(child);
    panic!(
        "server not listening on {port} after 15 s: {}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Starts a server on a fresh port, up to three times if it loses its port to a race.
fn start_on_free_port(mut spawn: impl FnMut(u16) -> (Child, PathBuf)) -> (Child, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let (mut child, log) = spawn(port);
        match wait_for_port(port, &mut child, &log) {
            Ok(()) => return (child, port),
            Err(e) => last = e,
        }
    }
    panic!("{last}");
}

/// Stops a child by pid: SIGTERM, then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on the pid of a child we started and have not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..200 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// uid of `nobody` from /etc/passwd.
fn nobody_uid() -> Option<u32> {
    fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find(|l| l.starts_with("nobody:"))?
        .split(':')
        .nth(2)?
        .parse()
        .ok()
}

/// An nginx serving WebDAV under /dav/.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with:
    /// - `/dav/`: WebDAV PUT/GET, 1 GiB bodies;
    /// - `/small/`: WebDAV with a 1 KiB body limit (for 413);
    /// - `/forbidden/`: always 403;
    /// - `/repos/`: static files for callers presenting `Authorization: Bearer test-token`
    ///   (a stand-in for GitHub's artifact API).
    pub fn start() -> Nginx {
        let bin = find_binary("nginx", &["/usr/sbin", "/sbin"]);
        let dir = tempfile::Builder::new()
            .prefix("packer-nginx-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        // Workers run as nobody: they must reach the data and temp directories.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in [
            "data",
            "data/dav",
            "data/small",
            "data/repos",
            "tmp",
            "logs",
        ] {
            fs::create_dir_all(root.join(sub)).unwrap();
            fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let user_line = if is_root() {
            let uid = nobody_uid().expect("a `nobody` user");
            for sub in ["data/dav", "data/small", "tmp"] {
                std::os::unix::fs::chown(root.join(sub), Some(uid), None).unwrap();
            }
            let group = if fs::read_to_string("/etc/group")
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("nogroup:"))
            {
                "nogroup"
            } else {
                "nobody"
            };
            format!("user nobody {group};")
        } else {
            String::new()
        };
        let r = root.display();
        let (child, port) = start_on_free_port(|port| {
            let conf = format!(
                r#"{user_line}
worker_processes 1;
pid {r}/nginx.pid;
error_log {r}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {r}/logs/access.log;
    client_body_temp_path {r}/tmp/body;
    proxy_temp_path {r}/tmp/proxy;
    fastcgi_temp_path {r}/tmp/fastcgi;
    uwsgi_temp_path {r}/tmp/uwsgi;
    scgi_temp_path {r}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {r}/data;
        client_max_body_size 1g;
        location /dav/ {{
            dav_methods PUT DELETE MKCOL;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
        location /small/ {{
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 1k;
        }}
        location /forbidden/ {{
            return 403;
        }}
        location /repos/ {{
            if ($http_authorization != "Bearer test-token") {{
                return 401 '{{"message": "Bad credentials"}}';
            }}
            default_type application/zip;
        }}
    }}
}}
"#
            );
            let conf_path = root.join("nginx.conf");
            fs::write(&conf_path, conf).unwrap();
            let log = root.join("logs/stderr.log");
            let child = Command::new(&bin)
                .arg("-p")
                .arg(&root)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(root.join("logs/error.log"))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            (child, root.join("logs/error.log"))
        });
        Nginx {
            child,
            port,
            root,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// Where nginx keeps a URL path's file.
    pub fn file(&self, path: &str) -> PathBuf {
        self.root.join("data").join(path.trim_start_matches('/'))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// An S3-compatible server (s3s-fs) with one bucket.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
    pub access_key: String,
    pub secret_key: String,
    _dir: tempfile::TempDir,
}

impl S3Server {
    pub fn start(bucket: &str) -> S3Server {
        let bin = find_binary("s3s-fs", &[]);
        let dir = tempfile::Builder::new()
            .prefix("packer-s3-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("data").join(bucket)).unwrap();
        let access_key = "AKIAPACKERTEST".to_string();
        let secret_key = "packer-test-secret-key-0123456789".to_string();
        let log = root.join("s3s.log");
        let (child, port) = start_on_free_port(|port| {
            let child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", &access_key, "--secret-key", &secret_key])
                .arg(root.join("data"))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (child, log.clone())
        });
        S3Server {
            child,
            port,
            root,
            access_key,
            secret_key,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
