//! A local stand-in for the Hugging Face hub: serves a folder in the hub's
//! URL layout (`/{owner}/{name}/resolve/{revision}/{file}`) with the headers
//! hf-hub reads (`etag`/`x-linked-etag`, `x-repo-commit`, `content-range`).
#![allow(dead_code)] // not every test binary uses it

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use sha2::Digest;

/// A running mock hub; stops when the test process ends.
pub struct MockHub {
    pub endpoint: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checksum the hub names a file by: SHA-256 for LFS files (`.onnx`),
/// Git's blob SHA-1 for the rest.
fn etag(name: &str, content: &[u8]) -> String {
    if name.ends_with(".onnx") {
        hex(&sha2::Sha256::digest(content))
    } else {
        let mut hasher = sha1::Sha1::new();
        hasher.update(format!("blob {}\0", content.len()).as_bytes());
        hasher.update(content);
        hex(&hasher.finalize())
    }
}

/// Serves `folder` for every repository; `corrupt` names a file whose
/// bytes are changed after its checksum was taken.
pub fn serve(folder: PathBuf, corrupt: Option<&'static str>) -> MockHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut range_start = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(range) = lower.strip_prefix("range: bytes=") {
                    range_start = range.split('-').next().unwrap().trim().parse().unwrap_or(0);
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            // /owner/name/resolve/main/<file>
            let file = target.splitn(6, '/').nth(5).unwrap_or("").to_string();
            let response = match std::fs::read(folder.join(&file)) {
                Ok(mut content) if target.contains("/resolve/") => {
                    let tag = etag(&file, &content);
                    if corrupt == Some(file.as_str()) {
                        content[0] ^= 0xff;
                    }
                    let body = content[range_start.min(content.len())..].to_vec();
                    let end = content.len().saturating_sub(1);
                    let mut head = format!(
                        "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {range_start}-{end}/{}\r\n\
                         x-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\nconnection: close\r\n",
                        body.len(),
                        content.len()
                    );
                    if file.ends_with(".onnx") {
                        head.push_str(&format!("x-linked-etag: \"{tag}\"\r\netag: \"other\"\r\n"));
                    } else {
                        head.push_str(&format!("etag: \"{tag}\"\r\n"));
                    }
                    head.push_str("\r\n");
                    let mut response = head.into_bytes();
                    response.extend_from_slice(&body);
                    response
                }
                _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    MockHub { endpoint }
}
