//! A small static file server for the built web app, bound to 127.0.0.1 only. `/NAME/…` is served from the bundle
//! directory mounted as NAME (`bundle`: the image model, `reviews`: the review model), everything else from
//! trunk's output.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::thread;

pub struct Server {
    pub port: u16,
}

/// A bundle directory and the name it is served under.
pub type Mount = (&'static str, PathBuf);

/// Starts serving on 127.0.0.1:`port` (0 = any free port) in background threads.
pub fn start(dist: PathBuf, bundles: Vec<Mount>, port: u16) -> Result<Server, String> {
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (dist, bundles) = (dist.clone(), bundles.clone());
            thread::spawn(move || {
                let _ = handle(stream, &dist, &bundles);
            });
        }
    });
    Ok(Server { port })
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn resolve(root: &Path, rest: &str) -> Option<PathBuf> {
    let rel = Path::new(rest.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn handle(stream: TcpStream, dist: &Path, bundles: &[Mount]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let mounted = bundles.iter().find_map(|(name, dir)| {
        let rest = path.strip_prefix('/')?.strip_prefix(name)?.strip_prefix('/')?;
        Some((dir, rest))
    });
    let file = match mounted {
        Some((dir, rest)) => resolve(dir, rest),
        None if path == "/" => Some(dist.join("index.html")),
        None => resolve(dist, path),
    };
    let mut stream = stream;
    match file.and_then(|f| std::fs::read(&f).ok().map(|b| (f, b))) {
        Some((f, body)) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                content_type(&f),
                body.len()
            )?;
            stream.write_all(&body)
        }
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"),
    }
}
